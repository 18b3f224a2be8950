from enum import StrEnum

class ProblemCode(StrEnum):
    ADMINS_ONLY = "admins_only"
    BAD_CURSOR = "bad_cursor"
    BAD_LAST_EVENT_ID = "bad_last_event_id"
    BODY_TOO_LARGE = "body_too_large"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CAP_ABOVE_CEILING = "cap_above_ceiling"
    CONCURRENCY_LIMITED = "concurrency_limited"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INTERNAL_ERROR = "internal_error"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ALLOWED = "not_allowed"
    NOT_A_MEMBER = "not_a_member"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_INVALID = "token_invalid"
    TOKEN_MISSING = "token_missing"
    TOO_MANY_STREAMS = "too_many_streams"
    UNAVAILABLE = "unavailable"
    VALIDATION_FAILED = "validation_failed"

    def __str__(self) -> str:
        return str(self.value)
