from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.company_membership_role import CompanyMembershipRole
from uuid import UUID






T = TypeVar("T", bound="CompanyMembership")



@_attrs_define
class CompanyMembership:
    """ 
        Attributes:
            company_id (UUID):
            name (str):
            role (CompanyMembershipRole):
     """

    company_id: UUID
    name: str
    role: CompanyMembershipRole
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        company_id = str(self.company_id)

        name = self.name

        role = self.role.value


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "company_id": company_id,
            "name": name,
            "role": role,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        company_id = UUID(d.pop("company_id"))




        name = d.pop("name")

        role = CompanyMembershipRole(d.pop("role"))




        company_membership = cls(
            company_id=company_id,
            name=name,
            role=role,
        )


        company_membership.additional_properties = d
        return company_membership

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
