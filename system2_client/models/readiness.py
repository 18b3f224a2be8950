from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.readiness_status import ReadinessStatus
from ..types import UNSET, Unset
from typing import cast

if TYPE_CHECKING:
  from ..models.readiness_problems_type_0 import ReadinessProblemsType0





T = TypeVar("T", bound="Readiness")



@_attrs_define
class Readiness:
    """ 
        Attributes:
            status (ReadinessStatus):
            problems (None | ReadinessProblemsType0 | Unset): what is down, and how
     """

    status: ReadinessStatus
    problems: None | ReadinessProblemsType0 | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.readiness_problems_type_0 import ReadinessProblemsType0 # noqa: PLC0415
        status = self.status.value

        problems: dict[str, Any] | None | Unset
        if isinstance(self.problems, Unset):
            problems = UNSET
        elif isinstance(self.problems, ReadinessProblemsType0):
            problems = self.problems.to_dict()
        else:
            problems = self.problems


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "status": status,
        })
        if problems is not UNSET:
            field_dict["problems"] = problems

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.readiness_problems_type_0 import ReadinessProblemsType0 # noqa: PLC0415
        d = dict(src_dict)
        status = ReadinessStatus(d.pop("status"))




        def _parse_problems(data: object) -> None | ReadinessProblemsType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                problems_type_0 = ReadinessProblemsType0.from_dict(data)



                return problems_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | ReadinessProblemsType0 | Unset, data)

        problems = _parse_problems(d.pop("problems", UNSET))


        readiness = cls(
            status=status,
            problems=problems,
        )


        readiness.additional_properties = d
        return readiness

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
