from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.quest_summary_view_status import QuestSummaryViewStatus
from typing import cast
from uuid import UUID
import datetime






T = TypeVar("T", bound="QuestSummaryView")



@_attrs_define
class QuestSummaryView:
    """ 
        Attributes:
            cost_usd_micros (int):
            created_at (datetime.datetime):
            created_by (str): who submitted it: `user:<id>` or `operator:<name>`
            finished_at (datetime.datetime | None):
            goal (str):
            max_usd_micros (int | None):
            model (str):
            quest_id (UUID):
            status (QuestSummaryViewStatus):
            steps_done (int):
     """

    cost_usd_micros: int
    created_at: datetime.datetime
    created_by: str
    finished_at: datetime.datetime | None
    goal: str
    max_usd_micros: int | None
    model: str
    quest_id: UUID
    status: QuestSummaryViewStatus
    steps_done: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        cost_usd_micros = self.cost_usd_micros

        created_at = self.created_at.isoformat()

        created_by = self.created_by

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

        steps_done = self.steps_done


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "cost_usd_micros": cost_usd_micros,
            "created_at": created_at,
            "created_by": created_by,
            "finished_at": finished_at,
            "goal": goal,
            "max_usd_micros": max_usd_micros,
            "model": model,
            "quest_id": quest_id,
            "status": status,
            "steps_done": steps_done,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cost_usd_micros = d.pop("cost_usd_micros")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))




        created_by = d.pop("created_by")

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




        status = QuestSummaryViewStatus(d.pop("status"))




        steps_done = d.pop("steps_done")

        quest_summary_view = cls(
            cost_usd_micros=cost_usd_micros,
            created_at=created_at,
            created_by=created_by,
            finished_at=finished_at,
            goal=goal,
            max_usd_micros=max_usd_micros,
            model=model,
            quest_id=quest_id,
            status=status,
            steps_done=steps_done,
        )


        quest_summary_view.additional_properties = d
        return quest_summary_view

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
