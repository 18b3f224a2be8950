""" Contains all the data models used in inputs/outputs """

from .activity_page import ActivityPage
from .activity_view import ActivityView
from .activity_view_actor_type import ActivityViewActorType
from .activity_view_payload import ActivityViewPayload
from .authorize_view import AuthorizeView
from .cancel_request import CancelRequest
from .company_membership import CompanyMembership
from .company_membership_role import CompanyMembershipRole
from .cost_split import CostSplit
from .credential_uses_response_200_item import CredentialUsesResponse200Item
from .delivery_page import DeliveryPage
from .delivery_view import DeliveryView
from .delivery_view_data import DeliveryViewData
from .delivery_view_status import DeliveryViewStatus
from .field_problem import FieldProblem
from .guard_view import GuardView
from .guard_view_limits import GuardViewLimits
from .healthz_response_healthz import HealthzResponseHealthz
from .integration_tokens import IntegrationTokens
from .integration_view import IntegrationView
from .integration_view_status import IntegrationViewStatus
from .list_quests_status_type_0_item import ListQuestsStatusType0Item
from .live_event_data import LiveEventData
from .live_event_data_data import LiveEventDataData
from .live_event_data_kind import LiveEventDataKind
from .problem import Problem
from .problem_code import ProblemCode
from .problem_window_type_0 import ProblemWindowType0
from .quest_accepted import QuestAccepted
from .quest_accepted_status_type_0 import QuestAcceptedStatusType0
from .quest_page import QuestPage
from .quest_submit import QuestSubmit
from .quest_summary_view import QuestSummaryView
from .quest_summary_view_status import QuestSummaryViewStatus
from .quest_view import QuestView
from .quest_view_status import QuestViewStatus
from .readiness import Readiness
from .readiness_problems_type_0 import ReadinessProblemsType0
from .readiness_status import ReadinessStatus
from .spend_view import SpendView
from .spend_view_scope import SpendViewScope
from .spend_view_tier import SpendViewTier
from .step_view import StepView
from .step_view_status import StepViewStatus
from .webhook_created import WebhookCreated
from .webhook_spec import WebhookSpec
from .webhook_spec_event_types_item import WebhookSpecEventTypesItem
from .webhook_view import WebhookView

__all__ = (
    "ActivityPage",
    "ActivityView",
    "ActivityViewActorType",
    "ActivityViewPayload",
    "AuthorizeView",
    "CancelRequest",
    "CompanyMembership",
    "CompanyMembershipRole",
    "CostSplit",
    "CredentialUsesResponse200Item",
    "DeliveryPage",
    "DeliveryView",
    "DeliveryViewData",
    "DeliveryViewStatus",
    "FieldProblem",
    "GuardView",
    "GuardViewLimits",
    "HealthzResponseHealthz",
    "IntegrationTokens",
    "IntegrationView",
    "IntegrationViewStatus",
    "ListQuestsStatusType0Item",
    "LiveEventData",
    "LiveEventDataData",
    "LiveEventDataKind",
    "Problem",
    "ProblemCode",
    "ProblemWindowType0",
    "QuestAccepted",
    "QuestAcceptedStatusType0",
    "QuestPage",
    "QuestSubmit",
    "QuestSummaryView",
    "QuestSummaryViewStatus",
    "QuestView",
    "QuestViewStatus",
    "Readiness",
    "ReadinessProblemsType0",
    "ReadinessStatus",
    "SpendView",
    "SpendViewScope",
    "SpendViewTier",
    "StepView",
    "StepViewStatus",
    "WebhookCreated",
    "WebhookSpec",
    "WebhookSpecEventTypesItem",
    "WebhookView",
)
