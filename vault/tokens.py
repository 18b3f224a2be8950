"""Sealing an integration's OAuth tokens: each token is bound to its company, integration,
credential and field, so neither can be moved to another row — nor swapped with the other."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from vault.cipher import key_id_of
from vault.secret import Secret
from vault.vault import Vault

ACCESS = "access_token"
REFRESH = "refresh_token"


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
    def one(token: Secret, field: str) -> bytes:
        return vault.encrypt(
            token,
            company_id=company_id,
            integration=integration,
            credential_id=binding(credential_id, field),
        )

    access_ct = one(access, ACCESS)
    return SealedTokens(
        key_id=key_id_of(access_ct),
        access_token=access_ct,
        refresh_token=one(refresh, REFRESH) if refresh is not None else None,
    )


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
