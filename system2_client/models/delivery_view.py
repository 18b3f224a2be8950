from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.delivery_view_status import DeliveryViewStatus
from typing import cast
from uuid import UUID
import datetime

if TYPE_CHECKING:
  from ..models.delivery_view_data import DeliveryViewData





T = TypeVar("T", bound="DeliveryView")



@_attrs_define
class DeliveryView:
    """ 
        Attributes:
            attempts (int):
            created_at (datetime.datetime):
            data (DeliveryViewData):
            delivered_at (datetime.datetime | None):
            event_type (str):
            id (str): the webhook-id header of every attempt of this delivery
            last_attempt_at (datetime.datetime | None):
            last_error (None | str):
            last_status (int | None): the HTTP status of the last attempt, if any
            next_attempt_at (datetime.datetime | None):
            quest_id (None | UUID):
            status (DeliveryViewStatus): pending (to be tried, or tried again at next_attempt_at); delivered (a 2xx came
                back); failed (given up after every retry, or its endpoint was disabled)
     """

    attempts: int
    created_at: datetime.datetime
    data: DeliveryViewData
    delivered_at: datetime.datetime | None
    event_type: str
    id: str
    last_attempt_at: datetime.datetime | None
    last_error: None | str
    last_status: int | None
    next_attempt_at: datetime.datetime | None
    quest_id: None | UUID
    status: DeliveryViewStatus
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.delivery_view_data import DeliveryViewData # noqa: PLC0415
        attempts = self.attempts

        created_at = self.created_at.isoformat()

        data = self.data.to_dict()

        delivered_at: None | str
        if isinstance(self.delivered_at, datetime.datetime):
            delivered_at = self.delivered_at.isoformat()
        else:
            delivered_at = self.delivered_at

        event_type = self.event_type

        id = self.id

        last_attempt_at: None | str
        if isinstance(self.last_attempt_at, datetime.datetime):
            last_attempt_at = self.last_attempt_at.isoformat()
        else:
            last_attempt_at = self.last_attempt_at

        last_error: None | str
        last_error = self.last_error

        last_status: int | None
        last_status = self.last_status

        next_attempt_at: None | str
        if isinstance(self.next_attempt_at, datetime.datetime):
            next_attempt_at = self.next_attempt_at.isoformat()
        else:
            next_attempt_at = self.next_attempt_at

        quest_id: None | str
        if isinstance(self.quest_id, UUID):
            quest_id = str(self.quest_id)
        else:
            quest_id = self.quest_id

        status = self.status.value


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "attempts": attempts,
            "created_at": created_at,
            "data": data,
            "delivered_at": delivered_at,
            "event_type": event_type,
            "id": id,
            "last_attempt_at": last_attempt_at,
            "last_error": last_error,
            "last_status": last_status,
            "next_attempt_at": next_attempt_at,
            "quest_id": quest_id,
            "status": status,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.delivery_view_data import DeliveryViewData # noqa: PLC0415
        d = dict(src_dict)
        attempts = d.pop("attempts")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))




        data = DeliveryViewData.from_dict(d.pop("data"))




        def _parse_delivered_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                delivered_at_type_0 = datetime.datetime.fromisoformat(data)



                return delivered_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        delivered_at = _parse_delivered_at(d.pop("delivered_at"))


        event_type = d.pop("event_type")

        id = d.pop("id")

        def _parse_last_attempt_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                last_attempt_at_type_0 = datetime.datetime.fromisoformat(data)



                return last_attempt_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        last_attempt_at = _parse_last_attempt_at(d.pop("last_attempt_at"))


        def _parse_last_error(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        last_error = _parse_last_error(d.pop("last_error"))


        def _parse_last_status(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        last_status = _parse_last_status(d.pop("last_status"))


        def _parse_next_attempt_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                next_attempt_at_type_0 = datetime.datetime.fromisoformat(data)



                return next_attempt_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        next_attempt_at = _parse_next_attempt_at(d.pop("next_attempt_at"))


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


        status = DeliveryViewStatus(d.pop("status"))




        delivery_view = cls(
            attempts=attempts,
            created_at=created_at,
            data=data,
            delivered_at=delivered_at,
            event_type=event_type,
            id=id,
            last_attempt_at=last_attempt_at,
            last_error=last_error,
            last_status=last_status,
            next_attempt_at=next_attempt_at,
            quest_id=quest_id,
            status=status,
        )


        delivery_view.additional_properties = d
        return delivery_view

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
