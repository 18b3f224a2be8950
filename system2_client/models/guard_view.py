from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, BinaryIO, TextIO, TYPE_CHECKING, Generator

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast
from uuid import UUID

if TYPE_CHECKING:
  from ..models.guard_view_limits import GuardViewLimits
  from ..models.spend_view import SpendView





T = TypeVar("T", bound="GuardView")



@_attrs_define
class GuardView:
    """ 
        Attributes:
            company_id (UUID):
            limits (GuardViewLimits):
            queued_steps (int):
            running_quests (list[SpendView]):
            weight (int):
            windows (list[SpendView]):
     """

    company_id: UUID
    limits: GuardViewLimits
    queued_steps: int
    running_quests: list[SpendView]
    weight: int
    windows: list[SpendView]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)





    def to_dict(self) -> dict[str, Any]:
        from ..models.guard_view_limits import GuardViewLimits # noqa: PLC0415
        from ..models.spend_view import SpendView # noqa: PLC0415
        company_id = str(self.company_id)

        limits = self.limits.to_dict()

        queued_steps = self.queued_steps

        running_quests = []
        for running_quests_item_data in self.running_quests:
            running_quests_item = running_quests_item_data.to_dict()
            running_quests.append(running_quests_item)



        weight = self.weight

        windows = []
        for windows_item_data in self.windows:
            windows_item = windows_item_data.to_dict()
            windows.append(windows_item)




        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({
            "company_id": company_id,
            "limits": limits,
            "queued_steps": queued_steps,
            "running_quests": running_quests,
            "weight": weight,
            "windows": windows,
        })

        return field_dict



    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.guard_view_limits import GuardViewLimits # noqa: PLC0415
        from ..models.spend_view import SpendView # noqa: PLC0415
        d = dict(src_dict)
        company_id = UUID(d.pop("company_id"))




        limits = GuardViewLimits.from_dict(d.pop("limits"))




        queued_steps = d.pop("queued_steps")

        running_quests = []
        _running_quests = d.pop("running_quests")
        for running_quests_item_data in (_running_quests):
            running_quests_item = SpendView.from_dict(running_quests_item_data)



            running_quests.append(running_quests_item)


        weight = d.pop("weight")

        windows = []
        _windows = d.pop("windows")
        for windows_item_data in (_windows):
            windows_item = SpendView.from_dict(windows_item_data)



            windows.append(windows_item)


        guard_view = cls(
            company_id=company_id,
            limits=limits,
            queued_steps=queued_steps,
            running_quests=running_quests,
            weight=weight,
            windows=windows,
        )


        guard_view.additional_properties = d
        return guard_view

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
