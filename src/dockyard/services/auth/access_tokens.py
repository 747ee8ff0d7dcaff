"""Personal access tokens: named, expiring, revocable passwords for registry logins."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.audit import AuditLog
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.errors import Conflict, InvalidInput, NotFound
from dockyard.services.text import is_label


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


class AccessTokenService:
    def __init__(self, db: Database, audit: AuditLog, liveness: LivenessCache | None = None) -> None:
        self.db = db
        self.audit = audit
        self.liveness = liveness or LivenessCache(ttl=0)

    def _user_id(self, conn: sa.Connection, username: str) -> int:
        uid = conn.execute(sa.select(s.users.c.id).where(s.users.c.username == username)).scalar()
        if uid is None:
            raise NotFound(f"user {username!r} does not exist", {"user": username})
        return int(uid)

    def create(self, username: str, name: str, expires_at: float | None = None) -> CreatedAccessToken:
        if not is_label(name, 128):  # shown in lists and audit events: no newline, no NUL
            raise InvalidInput("token name must be 1 to 128 printable characters, without surrounding spaces")
        if expires_at is not None and expires_at <= now():
            raise InvalidInput("expiry must be in the future")
        secret = gen.generate(gen.PAT_PREFIX)
        with self.db.write() as conn:
            uid = self._user_id(conn, username)
            created = conn.execute(
                self.db.insert_ignore(
                    s.access_tokens,
                    user_id=uid,
                    name=name,
                    token_hash=gen.digest(secret),
                    expires_at=expires_at,
                    created_at=now(),
                ).returning(s.access_tokens.c.id)
            ).scalar()
            if created is None:  # ON CONFLICT DO NOTHING: a concurrent create of the same name is a Conflict
                raise Conflict(f"a token named {name!r} already exists", {"name": name})
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
