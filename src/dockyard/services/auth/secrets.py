"""Generated secrets (robot secrets, personal access tokens, OIDC CLI secrets).

They carry 256 random bits, so a plain SHA-256 is as safe to store as a slow password hash and
lets a login find its row by an indexed lookup instead of trying argon2 on every candidate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.db.engine import Database, now
from dockyard.services.errors import Conflict

# What each kind of secret starts with, so a login can tell them apart before any lookup (and a
# leaked one is recognisable by secret scanners). Robot *login names* start with
# identity.ROBOT_NAME_PREFIX; these are the secrets.
ACCESS_TOKEN_SECRET_PREFIX = "dyp_"  # a personal access token
ROBOT_SECRET_PREFIX = "dyr_"  # a robot account's secret
CLI_SECRET_PREFIX = "dyc_"  # an OIDC user's registry-login secret


def generate(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str | None) -> bool:
    return stored_digest is not None and hmac.compare_digest(digest(secret), stored_digest)


@dataclass(frozen=True, slots=True)
class CredentialTable:
    """Where a kind of named credential lives: its table, the column of its secret's digest, and the
    prefix of its secrets. Each owning service names its own (robots.py, access_tokens.py)."""

    table: sa.Table
    hash_column: str
    prefix: str


def insert_credential(
    db: Database, conn: sa.Connection, kind: CredentialTable, taken: Conflict, **values: Any
) -> tuple[int, str]:
    """Insert a named credential row (a robot, an access token) with a fresh secret, of which only the
    digest is stored: (row id, the secret, to be shown once). ON CONFLICT DO NOTHING, so a concurrent
    create of the same name raises `taken` (a Conflict), not a 500 on the unique name."""
    secret = generate(kind.prefix)
    values = {kind.hash_column: digest(secret), "created_at": now(), **values}
    row_id = conn.execute(db.insert_ignore(kind.table, **values).returning(kind.table.c.id)).scalar()
    if row_id is None:
        raise taken
    return int(row_id), secret
