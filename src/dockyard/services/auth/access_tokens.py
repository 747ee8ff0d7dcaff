"""Personal access tokens: named, expiring, revocable passwords for registry logins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.audit import AuditLog
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.auth.users import UserService
from dockyard.services.errors import Conflict, InvalidInput, NotFound
from dockyard.services.text import is_label

_CREDENTIALS = gen.CredentialTable(s.access_tokens, "token_hash", gen.ACCESS_TOKEN_SECRET_PREFIX)


@dataclass(frozen=True, slots=True)
class AccessToken:
    id: int
    name: str
    expires_at: float | None
    revoked_at: float | None
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True, slots=True)
class CreatedAccessToken:
    token: AccessToken
    secret: str  # shown once


def _token(row: sa.Row[tuple[object, ...]]) -> AccessToken:
    m = row._mapping
    return AccessToken(m["id"], m["name"], m["expires_at"], m["revoked_at"], m["created_at"], m["last_used_at"])


@dataclass(frozen=True, slots=True)
class LiveToken:
    """An access token that may still be used (not revoked, not expired), and whose it is."""

    id: int
    user_id: int


def _live(row: Any) -> bool:  # a row with expires_at and revoked_at, or None
    return row is not None and row.revoked_at is None and (row.expires_at is None or row.expires_at > now())


class AccessTokenService:
    """Owns the `access_tokens` table."""

    def __init__(
        self, db: Database, audit: AuditLog, users: UserService, liveness: LivenessCache | None = None
    ) -> None:
        self.db = db
        self.audit = audit
        self.users = users
        self.liveness = liveness or LivenessCache(ttl=0)

    def _user_id(self, conn: sa.Connection, username: str) -> int:
        user = self.users.find(conn, username)
        if user is None:
            raise NotFound(f"user {username!r} does not exist", {"user": username})
        return user.id

    # --- for the authenticator ----------------------------------------------------------------
    def find_live(self, secret: str) -> LiveToken | None:
        """The usable token this secret is, found by the secret's digest alone (an indexed lookup,
        as fast for an unknown secret as for a known one)."""
        t = s.access_tokens.c
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(t.id, t.user_id, t.expires_at, t.revoked_at).where(t.token_hash == gen.digest(secret))
            ).first()
        return LiveToken(row.id, row.user_id) if row is not None and _live(row) else None

    def is_live(self, token_id: int, user_id: int) -> bool:
        """Whether this user's token may still be used (a bearer token issued from it dies with it)."""
        t = s.access_tokens.c
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(t.expires_at, t.revoked_at).where(t.id == token_id, t.user_id == user_id)
            ).first()
        return _live(row)

    def mark_used(self, token_id: int) -> None:
        """Record a login with the token (last_used_at)."""
        with self.db.write() as conn:
            conn.execute(sa.update(s.access_tokens).where(s.access_tokens.c.id == token_id).values(last_used_at=now()))

    def create(self, username: str, name: str, expires_at: float | None = None) -> CreatedAccessToken:
        if not is_label(name, 128):  # shown in lists and audit events: no newline, no NUL
            raise InvalidInput("token name must be 1 to 128 printable characters, without surrounding spaces")
        if expires_at is not None and expires_at <= now():
            raise InvalidInput("expiry must be in the future")
        with self.db.write() as conn:
            uid = self._user_id(conn, username)
            taken = Conflict(f"a token named {name!r} already exists", {"name": name})
            _, secret = gen.insert_credential(
                self.db, conn, _CREDENTIALS, taken, user_id=uid, name=name, expires_at=expires_at
            )
            row = conn.execute(
                sa.select(s.access_tokens).where(s.access_tokens.c.user_id == uid, s.access_tokens.c.name == name)
            ).one()
            self.audit.record(conn, "token.create", reference=name, detail={"user": username, "expires_at": expires_at})
        return CreatedAccessToken(_token(row), secret)

    def list(self, username: str) -> list[AccessToken]:
        with self.db.read() as conn:
            uid = self._user_id(conn, username)
            rows = conn.execute(
                sa.select(s.access_tokens).where(s.access_tokens.c.user_id == uid).order_by(s.access_tokens.c.name)
            ).all()
        return [_token(r) for r in rows]

    def revoke(self, username: str, name: str) -> None:
        with self.db.write() as conn:
            uid = self._user_id(conn, username)
            done = conn.execute(
                sa.update(s.access_tokens)
                .where(
                    s.access_tokens.c.user_id == uid,
                    s.access_tokens.c.name == name,
                    s.access_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now())
            ).rowcount
            if not done:
                raise NotFound(f"no active token named {name!r}", {"name": name})
            self.audit.record(conn, "token.revoke", reference=name, detail={"user": username})
        self.liveness.clear()
