from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast
import datetime






T = TypeVar("T", bound="AuthorizeView")



@_attrs_define
class AuthorizeView:
    """ 
        Attributes:
            authorize_url (str): open it in the admin's browser: the provider's consent page
            expires_at (datetime.datetime): the link is good once, until then
            redirect_uri (str): where the provider sends the browser back (ours)
     """

    authorize_url: str
    expires_at: datetime.datetime
    redirect_uri: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        authorize_url = self.authorize_url

        expires_at = self.expires_at.isoformat()

        redirect_uri = self.redirect_uri


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "authorize_url": authorize_url,
            "expires_at": expires_at,
            "redirect_uri": redirect_uri,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        authorize_url = d.pop("authorize_url")

        expires_at = datetime.datetime.fromisoformat(d.pop("expires_at"))




        redirect_uri = d.pop("redirect_uri")

        authorize_view = cls(
            authorize_url=authorize_url,
            expires_at=expires_at,
            redirect_uri=redirect_uri,
        )


        authorize_view.additional_properties = d
        return authorize_view

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
