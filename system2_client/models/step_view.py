from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.step_view_status import StepViewStatus
from ..types import UNSET, Unset
from typing import cast
import datetime

if TYPE_CHECKING:
  from ..models.cost_split import CostSplit





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
            cost_split (CostSplit | None | Unset): None: no reply yet
     """

    cost_usd_micros: int
    finished_at: datetime.datetime | None
    started_at: datetime.datetime
    status: StepViewStatus
    step: int
    stop_reason: None | str
    tools: list[str]
    cost_split: CostSplit | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.cost_split import CostSplit # noqa: PLC0415
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



        cost_split: dict[str, Any] | None | Unset
        if isinstance(self.cost_split, Unset):
            cost_split = UNSET
        elif isinstance(self.cost_split, CostSplit):
            cost_split = self.cost_split.to_dict()
        else:
            cost_split = self.cost_split


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
        if cost_split is not UNSET:
            field_dict["cost_split"] = cost_split

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.cost_split import CostSplit # noqa: PLC0415
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


        def _parse_cost_split(data: object) -> CostSplit | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                cost_split_type_0 = CostSplit.from_dict(data)



                return cost_split_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CostSplit | None | Unset, data)

        cost_split = _parse_cost_split(d.pop("cost_split", UNSET))


        step_view = cls(
            cost_usd_micros=cost_usd_micros,
            finished_at=finished_at,
            started_at=started_at,
            status=status,
            step=step,
            stop_reason=stop_reason,
            tools=tools,
            cost_split=cost_split,
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
