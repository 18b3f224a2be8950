"""A webhook endpoint's signing secret: made here, shown once, stored sealed.

Standard Webhooks secrets are ``whsec_`` followed by the base64 of random bytes (24 to 64);
the HMAC key is those bytes. Sealed like an integration's token, bound to the company and
the endpoint, so a ciphertext moved to another endpoint's row does not open.
"""

from __future__ import annotations

import base64
import secrets
from uuid import UUID

from vault.secret import Secret
from vault.vault import Vault

PREFIX = "whsec_"
SECRET_BYTES = 32
SEALED_AS = "webhook"  # the vault's "integration" slot of the binding


def new_secret() -> Secret:
    return Secret(PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())


def key_bytes(secret: Secret) -> bytes:
    """The HMAC key: the bytes the part after ``whsec_`` encodes."""
    value = secret.reveal()
    return base64.b64decode(value.removeprefix(PREFIX))


def _binding(endpoint_id: UUID) -> str:
    return f"{endpoint_id}/signing_secret"


def seal(vault: Vault, secret: Secret, *, company_id: UUID, endpoint_id: UUID) -> bytes:
    return vault.encrypt(
        secret, company_id=company_id, integration=SEALED_AS, credential_id=_binding(endpoint_id)
    )


def unseal(vault: Vault, ciphertext: bytes, *, company_id: UUID, endpoint_id: UUID) -> Secret:
    return vault.decrypt(
        ciphertext,
        company_id=company_id,
        integration=SEALED_AS,
        credential_id=_binding(endpoint_id),
    )


def rewrap(vault: Vault, ciphertext: bytes, *, company_id: UUID, endpoint_id: UUID) -> bytes:
    """The sealed secret under the vault's primary key, its binding kept (the plaintext
    never leaves the vault)."""
    return vault.rewrap(
        ciphertext,
        company_id=company_id,
        integration=SEALED_AS,
        credential_id=_binding(endpoint_id),
    )
