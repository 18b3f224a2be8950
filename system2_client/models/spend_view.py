from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.spend_view_scope import SpendViewScope
from ..models.spend_view_tier import SpendViewTier
from ..types import UNSET, Unset
from typing import cast
from uuid import UUID






T = TypeVar("T", bound="SpendView")



@_attrs_define
class SpendView:
    """ 
        Attributes:
            cap_usd_micros (int):
            reserved_usd_micros (int):
            scope (SpendViewScope):
            spent_usd_micros (int):
            tier (SpendViewTier):
            quest_id (None | Unset | UUID):
            window (None | str | Unset):
     """

    cap_usd_micros: int
    reserved_usd_micros: int
    scope: SpendViewScope
    spent_usd_micros: int
    tier: SpendViewTier
    quest_id: None | Unset | UUID = UNSET
    window: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        cap_usd_micros = self.cap_usd_micros

        reserved_usd_micros = self.reserved_usd_micros

        scope = self.scope.value

        spent_usd_micros = self.spent_usd_micros

        tier = self.tier.value

        quest_id: None | str | Unset
        if isinstance(self.quest_id, Unset):
            quest_id = UNSET
        elif isinstance(self.quest_id, UUID):
            quest_id = str(self.quest_id)
        else:
            quest_id = self.quest_id

        window: None | str | Unset
        if isinstance(self.window, Unset):
            window = UNSET
        else:
            window = self.window


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "cap_usd_micros": cap_usd_micros,
            "reserved_usd_micros": reserved_usd_micros,
            "scope": scope,
            "spent_usd_micros": spent_usd_micros,
            "tier": tier,
        })
        if quest_id is not UNSET:
            field_dict["quest_id"] = quest_id
        if window is not UNSET:
            field_dict["window"] = window

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cap_usd_micros = d.pop("cap_usd_micros")

        reserved_usd_micros = d.pop("reserved_usd_micros")

        scope = SpendViewScope(d.pop("scope"))




        spent_usd_micros = d.pop("spent_usd_micros")

        tier = SpendViewTier(d.pop("tier"))




        def _parse_quest_id(data: object) -> None | Unset | UUID:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                quest_id_type_0 = UUID(data)



                return quest_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Unset | UUID, data)

        quest_id = _parse_quest_id(d.pop("quest_id", UNSET))


        def _parse_window(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        window = _parse_window(d.pop("window", UNSET))


        spend_view = cls(
            cap_usd_micros=cap_usd_micros,
            reserved_usd_micros=reserved_usd_micros,
            scope=scope,
            spent_usd_micros=spent_usd_micros,
            tier=tier,
            quest_id=quest_id,
            window=window,
        )


        spend_view.additional_properties = d
        return spend_view

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
