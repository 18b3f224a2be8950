from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.live_event_data_kind import LiveEventDataKind
from typing import cast

if TYPE_CHECKING:
  from ..models.live_event_data_data import LiveEventDataData





T = TypeVar("T", bound="LiveEventData")



@_attrs_define
class LiveEventData:
    """ The JSON of an event's ``data:`` line. The event's ``id:`` is its stream entry id
    (send it back as ``Last-Event-ID`` to resume) and its ``event:`` line is ``kind``.

        Attributes:
            at (str): when the worker issued it (ISO 8601, UTC)
            data (LiveEventDataData):
            kind (LiveEventDataKind): `quest.state`: the quest started or ended (`status`, `reason`, `result`; a quest's own
                stream ends after its terminal state); `step.started` (`reserved_usd_micros`); `step.waiting`: a step waits for
                Claude (`reason`, `retry_in_ms`); `claude.replied`: Claude's reply (`text`: its rationale, `tools`,
                `stop_reason`, `cost_usd_micros`, `quest_cost_usd_micros`, `input_tokens`, `cache_write_tokens`,
                `cache_read_tokens`, `output_tokens`); `guard.tier`: a budget crossed a tier (`scope`, `tier`,
                `spent_usd_micros`, `cap_usd_micros`); `guard.slowed`: the guard slowed the quest (`delay_ms`); `tool.called` /
                `tool.finished`: a tool call (`tool`, `tool_use_id`, `ok`, `target`); `step.finished`: a step ended
            quest_id (str):
            step (int | None):
     """

    at: str
    data: LiveEventDataData
    kind: LiveEventDataKind
    quest_id: str
    step: int | None
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.live_event_data_data import LiveEventDataData # noqa: PLC0415
        at = self.at

        data = self.data.to_dict()

        kind = self.kind.value

        quest_id = self.quest_id

        step: int | None
        step = self.step


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "at": at,
            "data": data,
            "kind": kind,
            "quest_id": quest_id,
            "step": step,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.live_event_data_data import LiveEventDataData # noqa: PLC0415
        d = dict(src_dict)
        at = d.pop("at")

        data = LiveEventDataData.from_dict(d.pop("data"))




        kind = LiveEventDataKind(d.pop("kind"))




        quest_id = d.pop("quest_id")

        def _parse_step(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        step = _parse_step(d.pop("step"))


        live_event_data = cls(
            at=at,
            data=data,
            kind=kind,
            quest_id=quest_id,
            step=step,
        )


        live_event_data.additional_properties = d
        return live_event_data

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
