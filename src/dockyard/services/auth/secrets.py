"""Generated secrets (robot secrets, personal access tokens, OIDC CLI secrets).

They carry 256 random bits, so a plain SHA-256 is as safe to store as a slow password hash and
lets a login find its row by an indexed lookup instead of trying argon2 on every candidate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PAT_PREFIX = "dyp_"
ROBOT_PREFIX = "dyr_"
CLI_PREFIX = "dyc_"


def generate(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str | None) -> bool:
    return stored_digest is not None and hmac.compare_digest(digest(secret), stored_digest)
