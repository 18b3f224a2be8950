from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.quest_accepted_status_type_0 import QuestAcceptedStatusType0
from typing import cast
from typing import Literal, cast
from uuid import UUID






T = TypeVar("T", bound="QuestAccepted")



@_attrs_define
class QuestAccepted:
    """ 
        Attributes:
            quest_id (UUID):
            status (Literal['cancelling'] | QuestAcceptedStatusType0): `queued` for a new quest (a retried submit: the
                quest's status now); `cancelling` after a cancel
     """

    quest_id: UUID
    status: Literal['cancelling'] | QuestAcceptedStatusType0
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        quest_id = str(self.quest_id)

        status: Literal['cancelling'] | str
        if isinstance(self.status, QuestAcceptedStatusType0):
            status = self.status.value
        else:
            status = self.status


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "quest_id": quest_id,
            "status": status,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        quest_id = UUID(d.pop("quest_id"))




        def _parse_status(data: object) -> Literal['cancelling'] | QuestAcceptedStatusType0:
            try:
                if not isinstance(data, str):
                    raise TypeError()
                status_type_0 = QuestAcceptedStatusType0(data)



                return status_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            status_type_1 = cast(Literal['cancelling'] , data)
            if status_type_1 != 'cancelling':
                raise ValueError(f"status_type_1 must match const 'cancelling', got '{status_type_1}'")
            return status_type_1

        status = _parse_status(d.pop("status"))


        quest_accepted = cls(
            quest_id=quest_id,
            status=status,
        )


        quest_accepted.additional_properties = d
        return quest_accepted

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
