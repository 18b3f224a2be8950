from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.problem_code import ProblemCode
from ..models.problem_window_type_0 import ProblemWindowType0
from ..types import UNSET, Unset
from typing import cast

if TYPE_CHECKING:
  from ..models.field_problem import FieldProblem





T = TypeVar("T", bound="Problem")



@_attrs_define
class Problem:
    """ What every error answer holds (RFC 9457), and the members some add.

        Attributes:
            code (ProblemCode):
            detail (str): for people; says what to do, never echoes input
            status (int):
            title (str):
            type_ (str): `urn:system2:problem:<code>`
            dependency (None | str | Unset): unavailable: what is down
            errors (list[FieldProblem] | None | Unset): validation_failed: each field
            exhausted (list[str] | None | Unset): budget_exhausted: every window spent
            limit (int | None | Unset): too_many_streams: the cap reached
            max_body_bytes (int | None | Unset):
            period (None | str | Unset): budget_exhausted: `2026-12-04` or `2026-12`
            reason (None | str | Unset): 429: the finer word (`daily_budget_exhausted`, `monthly_budget_exhausted`,
                `too_many_running_quests`, `too_many_quest_starts`, `too_many_streams_for_user`,
                `too_many_streams_for_company`); 413: `body_too_large`
            resets_at (None | str | Unset): budget_exhausted: when it resets (UTC)
            window (None | ProblemWindowType0 | Unset): budget_exhausted: the window that resets last
     """

    code: ProblemCode
    detail: str
    status: int
    title: str
    type_: str
    dependency: None | str | Unset = UNSET
    errors: list[FieldProblem] | None | Unset = UNSET
    exhausted: list[str] | None | Unset = UNSET
    limit: int | None | Unset = UNSET
    max_body_bytes: int | None | Unset = UNSET
    period: None | str | Unset = UNSET
    reason: None | str | Unset = UNSET
    resets_at: None | str | Unset = UNSET
    window: None | ProblemWindowType0 | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.field_problem import FieldProblem # noqa: PLC0415
        code = self.code.value

        detail = self.detail

        status = self.status

        title = self.title

        type_ = self.type_

        dependency: None | str | Unset
        if isinstance(self.dependency, Unset):
            dependency = UNSET
        else:
            dependency = self.dependency

        errors: list[dict[str, Any]] | None | Unset
        if isinstance(self.errors, Unset):
            errors = UNSET
        elif isinstance(self.errors, list):
            errors = []
            for errors_type_0_item_data in self.errors:
                errors_type_0_item = errors_type_0_item_data.to_dict()
                errors.append(errors_type_0_item)


        else:
            errors = self.errors

        exhausted: list[str] | None | Unset
        if isinstance(self.exhausted, Unset):
            exhausted = UNSET
        elif isinstance(self.exhausted, list):
            exhausted = self.exhausted


        else:
            exhausted = self.exhausted

        limit: int | None | Unset
        if isinstance(self.limit, Unset):
            limit = UNSET
        else:
            limit = self.limit

        max_body_bytes: int | None | Unset
        if isinstance(self.max_body_bytes, Unset):
            max_body_bytes = UNSET
        else:
            max_body_bytes = self.max_body_bytes

        period: None | str | Unset
        if isinstance(self.period, Unset):
            period = UNSET
        else:
            period = self.period

        reason: None | str | Unset
        if isinstance(self.reason, Unset):
            reason = UNSET
        else:
            reason = self.reason

        resets_at: None | str | Unset
        if isinstance(self.resets_at, Unset):
            resets_at = UNSET
        else:
            resets_at = self.resets_at

        window: None | str | Unset
        if isinstance(self.window, Unset):
            window = UNSET
        elif isinstance(self.window, ProblemWindowType0):
            window = self.window.value
        else:
            window = self.window


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "code": code,
            "detail": detail,
            "status": status,
            "title": title,
            "type": type_,
        })
        if dependency is not UNSET:
            field_dict["dependency"] = dependency
        if errors is not UNSET:
            field_dict["errors"] = errors
        if exhausted is not UNSET:
            field_dict["exhausted"] = exhausted
        if limit is not UNSET:
            field_dict["limit"] = limit
        if max_body_bytes is not UNSET:
            field_dict["max_body_bytes"] = max_body_bytes
        if period is not UNSET:
            field_dict["period"] = period
        if reason is not UNSET:
            field_dict["reason"] = reason
        if resets_at is not UNSET:
            field_dict["resets_at"] = resets_at
        if window is not UNSET:
            field_dict["window"] = window

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.field_problem import FieldProblem # noqa: PLC0415
        d = dict(src_dict)
        code = ProblemCode(d.pop("code"))




        detail = d.pop("detail")

        status = d.pop("status")

        title = d.pop("title")

        type_ = d.pop("type")

        def _parse_dependency(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        dependency = _parse_dependency(d.pop("dependency", UNSET))


        def _parse_errors(data: object) -> list[FieldProblem] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                errors_type_0 = []
                _errors_type_0 = data
                for errors_type_0_item_data in (_errors_type_0):
                    errors_type_0_item = FieldProblem.from_dict(errors_type_0_item_data)



                    errors_type_0.append(errors_type_0_item)

                return errors_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[FieldProblem] | None | Unset, data)

        errors = _parse_errors(d.pop("errors", UNSET))


        def _parse_exhausted(data: object) -> list[str] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                exhausted_type_0 = cast(list[str], data)

                return exhausted_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None | Unset, data)

        exhausted = _parse_exhausted(d.pop("exhausted", UNSET))


        def _parse_limit(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        limit = _parse_limit(d.pop("limit", UNSET))


        def _parse_max_body_bytes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        max_body_bytes = _parse_max_body_bytes(d.pop("max_body_bytes", UNSET))


        def _parse_period(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        period = _parse_period(d.pop("period", UNSET))


        def _parse_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        reason = _parse_reason(d.pop("reason", UNSET))


        def _parse_resets_at(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        resets_at = _parse_resets_at(d.pop("resets_at", UNSET))


        def _parse_window(data: object) -> None | ProblemWindowType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                window_type_0 = ProblemWindowType0(data)



                return window_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | ProblemWindowType0 | Unset, data)

        window = _parse_window(d.pop("window", UNSET))


        problem = cls(
            code=code,
            detail=detail,
            status=status,
            title=title,
            type_=type_,
            dependency=dependency,
            errors=errors,
            exhausted=exhausted,
            limit=limit,
            max_body_bytes=max_body_bytes,
            period=period,
            reason=reason,
            resets_at=resets_at,
            window=window,
        )


        problem.additional_properties = d
        return problem

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
