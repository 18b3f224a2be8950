from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.integration_view_status import IntegrationViewStatus
from ..types import UNSET, Unset
from typing import cast
import datetime






T = TypeVar("T", bound="IntegrationView")



@_attrs_define
class IntegrationView:
    """ 
        Attributes:
            access_expires_at (datetime.datetime | None):
            account (None | str):
            connected_at (datetime.datetime):
            connected_by (str):
            has_refresh_token (bool):
            integration (str):
            key_id (str):
            scopes (list[str]):
            status (IntegrationViewStatus): connected; needs_reconnect (the provider refused the token even after a refresh,
                or refused the refresh: a company admin must connect it again); disabled (this deployment does not offer the
                integration now: its tools are not offered)
            title (str):
            updated_at (datetime.datetime):
            needs_reconnect (bool | Unset): the provider refuses this connection (a 401 after a refresh, or a refused
                refresh): quests that use it fail until a company admin connects it again Default: False.
            needs_reconnect_reason (None | str | Unset):
            needs_reconnect_since (datetime.datetime | None | Unset):
     """

    access_expires_at: datetime.datetime | None
    account: None | str
    connected_at: datetime.datetime
    connected_by: str
    has_refresh_token: bool
    integration: str
    key_id: str
    scopes: list[str]
    status: IntegrationViewStatus
    title: str
    updated_at: datetime.datetime
    needs_reconnect: bool | Unset = False
    needs_reconnect_reason: None | str | Unset = UNSET
    needs_reconnect_since: datetime.datetime | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        access_expires_at: None | str
        if isinstance(self.access_expires_at, datetime.datetime):
            access_expires_at = self.access_expires_at.isoformat()
        else:
            access_expires_at = self.access_expires_at

        account: None | str
        account = self.account

        connected_at = self.connected_at.isoformat()

        connected_by = self.connected_by

        has_refresh_token = self.has_refresh_token

        integration = self.integration

        key_id = self.key_id

        scopes = self.scopes



        status = self.status.value

        title = self.title

        updated_at = self.updated_at.isoformat()

        needs_reconnect = self.needs_reconnect

        needs_reconnect_reason: None | str | Unset
        if isinstance(self.needs_reconnect_reason, Unset):
            needs_reconnect_reason = UNSET
        else:
            needs_reconnect_reason = self.needs_reconnect_reason

        needs_reconnect_since: None | str | Unset
        if isinstance(self.needs_reconnect_since, Unset):
            needs_reconnect_since = UNSET
        elif isinstance(self.needs_reconnect_since, datetime.datetime):
            needs_reconnect_since = self.needs_reconnect_since.isoformat()
        else:
            needs_reconnect_since = self.needs_reconnect_since


        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "access_expires_at": access_expires_at,
            "account": account,
            "connected_at": connected_at,
            "connected_by": connected_by,
            "has_refresh_token": has_refresh_token,
            "integration": integration,
            "key_id": key_id,
            "scopes": scopes,
            "status": status,
            "title": title,
            "updated_at": updated_at,
        })
        if needs_reconnect is not UNSET:
            field_dict["needs_reconnect"] = needs_reconnect
        if needs_reconnect_reason is not UNSET:
            field_dict["needs_reconnect_reason"] = needs_reconnect_reason
        if needs_reconnect_since is not UNSET:
            field_dict["needs_reconnect_since"] = needs_reconnect_since

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        def _parse_access_expires_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                access_expires_at_type_0 = datetime.datetime.fromisoformat(data)



                return access_expires_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        access_expires_at = _parse_access_expires_at(d.pop("access_expires_at"))


        def _parse_account(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        account = _parse_account(d.pop("account"))


        connected_at = datetime.datetime.fromisoformat(d.pop("connected_at"))




        connected_by = d.pop("connected_by")

        has_refresh_token = d.pop("has_refresh_token")

        integration = d.pop("integration")

        key_id = d.pop("key_id")

        scopes = cast(list[str], d.pop("scopes"))


        status = IntegrationViewStatus(d.pop("status"))




        title = d.pop("title")

        updated_at = datetime.datetime.fromisoformat(d.pop("updated_at"))




        needs_reconnect = d.pop("needs_reconnect", UNSET)

        def _parse_needs_reconnect_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        needs_reconnect_reason = _parse_needs_reconnect_reason(d.pop("needs_reconnect_reason", UNSET))


        def _parse_needs_reconnect_since(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                needs_reconnect_since_type_0 = datetime.datetime.fromisoformat(data)



                return needs_reconnect_since_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        needs_reconnect_since = _parse_needs_reconnect_since(d.pop("needs_reconnect_since", UNSET))


        integration_view = cls(
            access_expires_at=access_expires_at,
            account=account,
            connected_at=connected_at,
            connected_by=connected_by,
            has_refresh_token=has_refresh_token,
            integration=integration,
            key_id=key_id,
            scopes=scopes,
            status=status,
            title=title,
            updated_at=updated_at,
            needs_reconnect=needs_reconnect,
            needs_reconnect_reason=needs_reconnect_reason,
            needs_reconnect_since=needs_reconnect_since,
        )


        integration_view.additional_properties = d
        return integration_view

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
