from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset
from typing import cast






T = TypeVar("T", bound="QuestSubmit")



@_attrs_define
class QuestSubmit:
    """ 
        Attributes:
            goal (str):
            max_usd (None | str | Unset): a decimal amount of US dollars, e.g. '2.50'
            model (None | str | Unset):
     """

    goal: str
    max_usd: None | str | Unset = UNSET
    model: None | str | Unset = UNSET





    def to_dict(self) -> dict[str, Any]:
        goal = self.goal

        max_usd: None | str | Unset
        if isinstance(self.max_usd, Unset):
            max_usd = UNSET
        else:
            max_usd = self.max_usd

        model: None | str | Unset
        if isinstance(self.model, Unset):
            model = UNSET
        else:
            model = self.model


        field_dict: dict[str, Any] = {}

        field_dict.update({
            "goal": goal,
        })
        if max_usd is not UNSET:
            field_dict["max_usd"] = max_usd
        if model is not UNSET:
            field_dict["model"] = model

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        goal = d.pop("goal")

        def _parse_max_usd(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        max_usd = _parse_max_usd(d.pop("max_usd", UNSET))


        def _parse_model(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        model = _parse_model(d.pop("model", UNSET))


        quest_submit = cls(
            goal=goal,
            max_usd=max_usd,
            model=model,
        )

        return quest_submit

