"""Sealing an integration's OAuth tokens: each token is bound to its company, integration,
credential and field, so neither can be moved to another row — nor swapped with the other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from vault.cipher import key_id_of
from vault.secret import Secret
from vault.vault import Vault

ACCESS = "access_token"
REFRESH = "refresh_token"

T = TypeVar("T")


@dataclass(frozen=True)
class SealedTokens:
    key_id: str
    access_token: bytes
    refresh_token: bytes | None


def binding(credential_id: UUID, field: str) -> str:
    return f"{credential_id}/{field}"


def seal(
    vault: Vault,
    *,
    company_id: UUID,
    integration: str,
    credential_id: UUID,
    access: Secret,
    refresh: Secret | None,
) -> SealedTokens:
    def one(token: Secret, bound: str) -> bytes:
        return vault.encrypt(
            token, company_id=company_id, integration=integration, credential_id=bound
        )

    return _each_field(one, credential_id, access, refresh)


def unseal(
    vault: Vault,
    ciphertext: bytes,
    *,
    company_id: UUID,
    integration: str,
    credential_id: UUID,
    field: str,
) -> Secret:
    return vault.decrypt(
        ciphertext,
        company_id=company_id,
        integration=integration,
        credential_id=binding(credential_id, field),
    )


def rewrap(
    vault: Vault,
    *,
    company_id: UUID,
    integration: str,
    credential_id: UUID,
    access: bytes,
    refresh: bytes | None,
) -> SealedTokens:
    """Both sealed tokens under the vault's primary key, each with its binding kept (a token
    already under it is returned as it is). The plaintexts never leave the vault."""

    def one(ciphertext: bytes, bound: str) -> bytes:
        return vault.rewrap(
            ciphertext, company_id=company_id, integration=integration, credential_id=bound
        )

    return _each_field(one, credential_id, access, refresh)


def _each_field(
    op: Callable[[T, str], bytes], credential_id: UUID, access: T, refresh: T | None
) -> SealedTokens:
    """``op`` on each token with the binding of its field."""
    access_ct = op(access, binding(credential_id, ACCESS))
    return SealedTokens(
        key_id=key_id_of(access_ct),
        access_token=access_ct,
        refresh_token=op(refresh, binding(credential_id, REFRESH)) if refresh is not None else None,
    )
