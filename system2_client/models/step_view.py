from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.step_view_status import StepViewStatus
from typing import cast
import datetime






T = TypeVar("T", bound="StepView")



@_attrs_define
class StepView:
    """ 
        Attributes:
            cost_usd_micros (int):
            finished_at (datetime.datetime | None):
            started_at (datetime.datetime):
            status (StepViewStatus):
            step (int):
            stop_reason (None | str):
            tools (list[str]):
     """

    cost_usd_micros: int
    finished_at: datetime.datetime | None
    started_at: datetime.datetime
    status: StepViewStatus
    step: int
    stop_reason: None | str
    tools: list[str]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        cost_usd_micros = self.cost_usd_micros

        finished_at: None | str
        if isinstance(self.finished_at, datetime.datetime):
            finished_at = self.finished_at.isoformat()
        else:
            finished_at = self.finished_at

        started_at = self.started_at.isoformat()

        status = self.status.value

        step = self.step

        stop_reason: None | str
        stop_reason = self.stop_reason

        tools = self.tools




        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "cost_usd_micros": cost_usd_micros,
            "finished_at": finished_at,
            "started_at": started_at,
            "status": status,
            "step": step,
            "stop_reason": stop_reason,
            "tools": tools,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cost_usd_micros = d.pop("cost_usd_micros")

        def _parse_finished_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                finished_at_type_0 = datetime.datetime.fromisoformat(data)



                return finished_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        finished_at = _parse_finished_at(d.pop("finished_at"))


        started_at = datetime.datetime.fromisoformat(d.pop("started_at"))




        status = StepViewStatus(d.pop("status"))




        step = d.pop("step")

        def _parse_stop_reason(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        stop_reason = _parse_stop_reason(d.pop("stop_reason"))


        tools = cast(list[str], d.pop("tools"))


        step_view = cls(
            cost_usd_micros=cost_usd_micros,
            finished_at=finished_at,
            started_at=started_at,
            status=status,
            step=step,
            stop_reason=stop_reason,
            tools=tools,
        )


        step_view.additional_properties = d
        return step_view

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
