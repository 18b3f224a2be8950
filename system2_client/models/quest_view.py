from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.quest_view_status import QuestViewStatus
from ..types import UNSET, Unset
from typing import cast
from uuid import UUID
import datetime

if TYPE_CHECKING:
  from ..models.cost_split import CostSplit
  from ..models.step_view import StepView





T = TypeVar("T", bound="QuestView")



@_attrs_define
class QuestView:
    """ 
        Attributes:
            cost_split (CostSplit): What Claude replies cost, split the way they are billed: each part in micro-USD
                (rounded up, so the parts may sum to a little more than the billed cost) and in tokens.
                A prompt is uncached input, cache writes and cache reads; ``cache_read_pct`` is the share
                of prompt tokens read from the prompt cache.
            cost_usd_micros (int):
            created_at (datetime.datetime):
            finished_at (datetime.datetime | None):
            goal (str):
            max_usd_micros (int | None):
            model (str):
            quest_id (UUID):
            status (QuestViewStatus):
            steps (list[StepView]):
            reason (None | str | Unset):
            result (None | str | Unset):
     """

    cost_split: CostSplit
    cost_usd_micros: int
    created_at: datetime.datetime
    finished_at: datetime.datetime | None
    goal: str
    max_usd_micros: int | None
    model: str
    quest_id: UUID
    status: QuestViewStatus
    steps: list[StepView]
    reason: None | str | Unset = UNSET
    result: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.cost_split import CostSplit # noqa: PLC0415
        from ..models.step_view import StepView # noqa: PLC0415
        cost_split = self.cost_split.to_dict()

        cost_usd_micros = self.cost_usd_micros

        created_at = self.created_at.isoformat()

        finished_at: None | str
        if isinstance(self.finished_at, datetime.datetime):
            finished_at = self.finished_at.isoformat()
        else:
            finished_at = self.finished_at

        goal = self.goal

        max_usd_micros: int | None
        max_usd_micros = self.max_usd_micros

        model = self.model

        quest_id = str(self.quest_id)

        status = self.status.value

        steps = []
        for steps_item_data in self.steps:
            steps_item = steps_item_data.to_dict()
            steps.append(steps_item)



        reason: None | str | Unset
        if isinstance(self.reason, Unset):
            reason = UNSET
        else:
            reason = self.reason

        result: None | str | Unset
        if isinstance(self.result, Unset):
            result = UNSET
        else:
            result = self.result


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "cost_split": cost_split,
            "cost_usd_micros": cost_usd_micros,
            "created_at": created_at,
            "finished_at": finished_at,
            "goal": goal,
            "max_usd_micros": max_usd_micros,
            "model": model,
            "quest_id": quest_id,
            "status": status,
            "steps": steps,
        })
        if reason is not UNSET:
            field_dict["reason"] = reason
        if result is not UNSET:
            field_dict["result"] = result

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.cost_split import CostSplit # noqa: PLC0415
        from ..models.step_view import StepView # noqa: PLC0415
        d = dict(src_dict)
        cost_split = CostSplit.from_dict(d.pop("cost_split"))




        cost_usd_micros = d.pop("cost_usd_micros")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))




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


        goal = d.pop("goal")

        def _parse_max_usd_micros(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        max_usd_micros = _parse_max_usd_micros(d.pop("max_usd_micros"))


        model = d.pop("model")

        quest_id = UUID(d.pop("quest_id"))




        status = QuestViewStatus(d.pop("status"))




        steps = []
        _steps = d.pop("steps")
        for steps_item_data in (_steps):
            steps_item = StepView.from_dict(steps_item_data)



            steps.append(steps_item)


        def _parse_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        reason = _parse_reason(d.pop("reason", UNSET))


        def _parse_result(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        result = _parse_result(d.pop("result", UNSET))


        quest_view = cls(
            cost_split=cost_split,
            cost_usd_micros=cost_usd_micros,
            created_at=created_at,
            finished_at=finished_at,
            goal=goal,
            max_usd_micros=max_usd_micros,
            model=model,
            quest_id=quest_id,
            status=status,
            steps=steps,
            reason=reason,
            result=result,
        )


        quest_view.additional_properties = d
        return quest_view

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
