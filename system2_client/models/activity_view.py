from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.activity_view_actor_type import ActivityViewActorType
from typing import cast
from uuid import UUID
import datetime

if TYPE_CHECKING:
  from ..models.activity_view_payload import ActivityViewPayload





T = TypeVar("T", bound="ActivityView")



@_attrs_define
class ActivityView:
    """ 
        Attributes:
            action (str):
            actor_id (str):
            actor_type (ActivityViewActorType):
            id (int):
            occurred_at (datetime.datetime):
            originating_message_id (None | UUID):
            payload (ActivityViewPayload):
            quest_id (None | UUID):
            rationale (None | str):
            target (str):
     """

    action: str
    actor_id: str
    actor_type: ActivityViewActorType
    id: int
    occurred_at: datetime.datetime
    originating_message_id: None | UUID
    payload: ActivityViewPayload
    quest_id: None | UUID
    rationale: None | str
    target: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.activity_view_payload import ActivityViewPayload # noqa: PLC0415
        action = self.action

        actor_id = self.actor_id

        actor_type = self.actor_type.value

        id = self.id

        occurred_at = self.occurred_at.isoformat()

        originating_message_id: None | str
        if isinstance(self.originating_message_id, UUID):
            originating_message_id = str(self.originating_message_id)
        else:
            originating_message_id = self.originating_message_id

        payload = self.payload.to_dict()

        quest_id: None | str
        if isinstance(self.quest_id, UUID):
            quest_id = str(self.quest_id)
        else:
            quest_id = self.quest_id

        rationale: None | str
        rationale = self.rationale

        target = self.target


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "action": action,
            "actor_id": actor_id,
            "actor_type": actor_type,
            "id": id,
            "occurred_at": occurred_at,
            "originating_message_id": originating_message_id,
            "payload": payload,
            "quest_id": quest_id,
            "rationale": rationale,
            "target": target,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.activity_view_payload import ActivityViewPayload # noqa: PLC0415
        d = dict(src_dict)
        action = d.pop("action")

        actor_id = d.pop("actor_id")

        actor_type = ActivityViewActorType(d.pop("actor_type"))




        id = d.pop("id")

        occurred_at = datetime.datetime.fromisoformat(d.pop("occurred_at"))




        def _parse_originating_message_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                originating_message_id_type_0 = UUID(data)



                return originating_message_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        originating_message_id = _parse_originating_message_id(d.pop("originating_message_id"))


        payload = ActivityViewPayload.from_dict(d.pop("payload"))




        def _parse_quest_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                quest_id_type_0 = UUID(data)



                return quest_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        quest_id = _parse_quest_id(d.pop("quest_id"))


        def _parse_rationale(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        rationale = _parse_rationale(d.pop("rationale"))


        target = d.pop("target")

        activity_view = cls(
            action=action,
            actor_id=actor_id,
            actor_type=actor_type,
            id=id,
            occurred_at=occurred_at,
            originating_message_id=originating_message_id,
            payload=payload,
            quest_id=quest_id,
            rationale=rationale,
            target=target,
        )


        activity_view.additional_properties = d
        return activity_view

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
