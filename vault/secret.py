"""``Secret``: the only type that holds a plaintext credential.

Its str, repr and format are redacted, so a secret that reaches a log line, an f-string, an
exception text or a Sentry frame's locals shows as ``Secret('[redacted]')``. Pickling and
copying out of process are refused rather than silently carrying the value onto a queue or
into a cache; ``json.dumps`` refuses it as it refuses any unknown object. Code that needs the
value calls ``reveal()`` at the point of use, and nowhere else.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn, final

REDACTED = "Secret('[redacted]')"


def _refuse_pickle() -> NoReturn:
    raise TypeError("a Secret cannot be pickled: plaintext never goes onto a queue, cache or disk")


@final
class Secret:
    """A plaintext credential (str) with a redacted text form."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        set_value(self, value)

    def reveal(self) -> str:
        """The plaintext. Call it where the value is used, and keep the result out of
        variables that outlive that call."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        """Constant-time equality with another ``Secret``; never equal to a bare str."""
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(
            self._value.encode("utf-8", "surrogatepass"),
            other._value.encode("utf-8", "surrogatepass"),
        )

    # A hash of a credential is a fingerprint of it (and a dict key keeps it alive).
    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        _refuse_pickle()

    def __reduce__(self) -> NoReturn:
        _refuse_pickle()

    def __getstate__(self) -> NoReturn:
        _refuse_pickle()

    def __copy__(self) -> Secret:
        return self  # immutable; copying in memory exposes nothing

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


# How the vault builds a Secret around a decryption on its hot path, without the constructor's
# call and type check: ``secret = new(Secret)``, then ``set_value(secret, text)`` (``text``
# being a str by construction). Nothing else assigns: ``Secret.__setattr__`` refuses.
new = object.__new__
set_value: Any = Secret.__dict__["_value"].__set__
