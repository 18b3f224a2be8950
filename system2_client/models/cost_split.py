from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..types import UNSET, Unset






T = TypeVar("T", bound="CostSplit")



@_attrs_define
class CostSplit:
    """ What Claude replies cost, split the way they are billed: each part in micro-USD
    (rounded up, so the parts may sum to a little more than the billed cost) and in tokens.
    A prompt is uncached input, cache writes and cache reads; ``cache_read_pct`` is the share
    of prompt tokens read from the prompt cache.

        Attributes:
            cache_read_pct (int | Unset):  Default: 0.
            cache_read_tokens (int | Unset):  Default: 0.
            cache_read_usd_micros (int | Unset):  Default: 0.
            cache_write_tokens (int | Unset):  Default: 0.
            cache_write_usd_micros (int | Unset):  Default: 0.
            input_tokens (int | Unset):  Default: 0.
            input_usd_micros (int | Unset):  Default: 0.
            output_tokens (int | Unset):  Default: 0.
            output_usd_micros (int | Unset):  Default: 0.
     """

    cache_read_pct: int | Unset = 0
    cache_read_tokens: int | Unset = 0
    cache_read_usd_micros: int | Unset = 0
    cache_write_tokens: int | Unset = 0
    cache_write_usd_micros: int | Unset = 0
    input_tokens: int | Unset = 0
    input_usd_micros: int | Unset = 0
    output_tokens: int | Unset = 0
    output_usd_micros: int | Unset = 0
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        cache_read_pct = self.cache_read_pct

        cache_read_tokens = self.cache_read_tokens

        cache_read_usd_micros = self.cache_read_usd_micros

        cache_write_tokens = self.cache_write_tokens

        cache_write_usd_micros = self.cache_write_usd_micros

        input_tokens = self.input_tokens

        input_usd_micros = self.input_usd_micros

        output_tokens = self.output_tokens

        output_usd_micros = self.output_usd_micros


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
        })
        if cache_read_pct is not UNSET:
            field_dict["cache_read_pct"] = cache_read_pct
        if cache_read_tokens is not UNSET:
            field_dict["cache_read_tokens"] = cache_read_tokens
        if cache_read_usd_micros is not UNSET:
            field_dict["cache_read_usd_micros"] = cache_read_usd_micros
        if cache_write_tokens is not UNSET:
            field_dict["cache_write_tokens"] = cache_write_tokens
        if cache_write_usd_micros is not UNSET:
            field_dict["cache_write_usd_micros"] = cache_write_usd_micros
        if input_tokens is not UNSET:
            field_dict["input_tokens"] = input_tokens
        if input_usd_micros is not UNSET:
            field_dict["input_usd_micros"] = input_usd_micros
        if output_tokens is not UNSET:
            field_dict["output_tokens"] = output_tokens
        if output_usd_micros is not UNSET:
            field_dict["output_usd_micros"] = output_usd_micros

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cache_read_pct = d.pop("cache_read_pct", UNSET)

        cache_read_tokens = d.pop("cache_read_tokens", UNSET)

        cache_read_usd_micros = d.pop("cache_read_usd_micros", UNSET)

        cache_write_tokens = d.pop("cache_write_tokens", UNSET)

        cache_write_usd_micros = d.pop("cache_write_usd_micros", UNSET)

        input_tokens = d.pop("input_tokens", UNSET)

        input_usd_micros = d.pop("input_usd_micros", UNSET)

        output_tokens = d.pop("output_tokens", UNSET)

        output_usd_micros = d.pop("output_usd_micros", UNSET)

        cost_split = cls(
            cache_read_pct=cache_read_pct,
            cache_read_tokens=cache_read_tokens,
            cache_read_usd_micros=cache_read_usd_micros,
            cache_write_tokens=cache_write_tokens,
            cache_write_usd_micros=cache_write_usd_micros,
            input_tokens=input_tokens,
            input_usd_micros=input_usd_micros,
            output_tokens=output_tokens,
            output_usd_micros=output_usd_micros,
        )


        cost_split.additional_properties = d
        return cost_split

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
