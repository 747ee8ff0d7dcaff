"""Credential checks for every kind of caller, and whether a token's holder may still act.

A password may be: a local user's password, an LDAP user's directory password, an OIDC user's CLI
secret, a personal access token (any user), or a robot's secret (user name `robot$…`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.logs import get_logger
from dockyard.services.audit import DENIED, FAILURE, Actor, AuditLog
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.guard import LoginGuard, keys_for
from dockyard.services.auth.identity import ROBOT, ROBOT_PREFIX, SCANNER_SUBJECT, SYSTEM, USER, Identity
from dockyard.services.auth.ldap import LdapProvider, LdapUnavailable
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.auth.passwords import VerifiedCache, verify_password
from dockyard.services.auth.users import UserService
from dockyard.services.errors import TooManyRequests

_log = get_logger("dockyard.auth")


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    identity: Identity | None
    delay: float = 0.0  # seconds the caller should wait before answering a failure


class Authenticator:
    def __init__(
        self,
        db: Database,
        users: UserService,
        audit: AuditLog,
        guard: LoginGuard,
        ldap: LdapProvider | None = None,
        liveness: LivenessCache | None = None,
    ) -> None:
        self.db = db
        self.users = users
        self.audit = audit
        self.guard = guard
        self.ldap = ldap
        self.liveness = liveness or LivenessCache(ttl=0)
        self._verified = VerifiedCache()

    # --- logins ------------------------------------------------------------------------------
    def login(
        self,
        username: str,
        password: str,
        source_ip: str | None = None,
        user_agent: str | None = None,
        record_success: bool = True,
    ) -> LoginOutcome:
        """Check credentials with brute-force protection and an audit trail.

        Raises TooManyRequests while the address or account is locked out.
        """
        keys = keys_for(source_ip, username)
        kind = ROBOT if username.startswith(ROBOT_PREFIX) else USER
        actor = Actor(username, kind, None, source_ip, (user_agent or "")[:512] or None)
        try:
            self.guard.check(keys)
        except TooManyRequests as exc:
            self.audit.record_now("login", result=DENIED, actor=actor, detail={"reason": "locked out", **exc.detail})
            raise
        # A login at the token endpoint asks the directory afresh, so group changes apply at once;
        # Basic credentials repeated on every request may use the short verification cache.
        identity = self.authenticate(username, password, fresh=record_success)
        if identity is None:
            delay, locked = self.guard.failed(keys)
            self.audit.record_now("login", result=FAILURE, actor=actor, detail={"reason": "bad credentials"})
            if locked:
                self.audit.record_now(
                    "login.lockout", result=DENIED, actor=actor, detail={"seconds": self.guard.settings.lockout_seconds}
                )
            return LoginOutcome(None, delay)
        self.guard.succeeded(username)
        if record_success and identity.credential and identity.credential.startswith("pat:"):
            with self.db.write() as conn:
                conn.execute(
                    sa.update(s.access_tokens)
                    .where(s.access_tokens.c.id == int(identity.credential[4:]))
                    .values(last_used_at=now())
                )
        if record_success:
            self.audit.record_now("login", actor=Actor.of(identity, source_ip, user_agent))
        return LoginOutcome(identity)

    def authenticate(self, username: str, password: str, fresh: bool = False) -> Identity | None:
        """The identity for these credentials, or None. The account is read from the database on
        every call, so a disabled user is refused at once; only slow hash checks are cached."""
        if not username or not password:
            return None
        if username.startswith(ROBOT_PREFIX):
            return self._robot(username, password)
        with self.db.read() as conn:
            row = conn.execute(sa.select(s.users).where(s.users.c.username == username)).first()
        if row is not None and row.disabled:
            return None
        if password.startswith(gen.PAT_PREFIX):
            return self._access_token(username, password)
        if row is None or row.provider == "ldap":
            return self._ldap(username, password, row, fresh)
        if row.provider == "oidc":
            return self._identity(row) if gen.matches(password, row.cli_secret_hash) else None
        if not row.password_hash:
            return None
        if not self._verified.get(username, password, row.password_hash):
            if not verify_password(row.password_hash, password):
                return None
            self._verified.put(username, password, row.password_hash)
        return self._identity(row)

    @staticmethod
    def _identity(row: sa.Row[tuple[object, ...]], credential: str | None = None) -> Identity:
        m = row._mapping
        groups = frozenset(json.loads(m["groups"])) if m["groups"] else frozenset()
        return Identity(
            m["username"], bool(m["is_admin"]), USER, m["provider"], groups, bool(m["can_create_projects"]), credential
        )

    def _robot(self, name: str, secret: str) -> Identity | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(s.robots).where(s.robots.c.name == name)).first()
        if row is None or row.disabled or (row.expires_at is not None and row.expires_at <= now()):
            return None
        if not gen.matches(secret, row.secret_hash):
            return None
        return Identity(name, kind=ROBOT)

    def _access_token(self, username: str, secret: str) -> Identity | None:
        t, u = s.access_tokens.c, s.users.c
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(s.users, t.id.label("token_id"), t.expires_at, t.revoked_at)
                .select_from(s.access_tokens.join(s.users, u.id == t.user_id))
                .where(t.token_hash == gen.digest(secret))
            ).first()
        if row is None or row.username != username or row.disabled or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= now():
            return None
        return self._identity(row, credential=f"pat:{row.token_id}")

    def _ldap(
        self, username: str, password: str, row: sa.Row[tuple[object, ...]] | None, fresh: bool
    ) -> Identity | None:
        if self.ldap is None:
            return None
        marker = f"ldap:{row.id}" if row is not None else None
        if marker is not None and not fresh and self._verified.get(username, password, marker):
            return self._identity(row)  # type: ignore[arg-type]
        try:
            found = self.ldap.authenticate(username, password)
        except LdapUnavailable as exc:
            _log.warning("LDAP unavailable", error=str(exc))
            return None
        if found is None:
            return None
        with self.db.write() as conn:
            self.users.upsert_external(conn, username, "ldap", found.email, found.groups)
            record = conn.execute(sa.select(s.users).where(s.users.c.username == username)).one()
        self._verified.put(username, password, f"ldap:{record.id}")
        return self._identity(record)

    # --- token holders -----------------------------------------------------------------------
    def current(self, subject: str, credential: str | None = None) -> Identity | None:
        """The identity behind a token's subject as it is now; None if it may no longer act
        (deleted, disabled, expired robot, revoked access token)."""
        if not subject:
            return None
        return self.liveness.get_or_load((subject, credential), lambda: self._current(subject, credential))

    def _current(self, subject: str, credential: str | None) -> Identity | None:
        if subject == SCANNER_SUBJECT:
            return Identity(subject, kind=SYSTEM)
        with self.db.read() as conn:
            if subject.startswith(ROBOT_PREFIX):
                robot = conn.execute(
                    sa.select(s.robots.c.disabled, s.robots.c.expires_at).where(s.robots.c.name == subject)
                ).first()
                if robot is None or robot.disabled or (robot.expires_at is not None and robot.expires_at <= now()):
                    return None
                return Identity(subject, kind=ROBOT)
            row = conn.execute(sa.select(s.users).where(s.users.c.username == subject)).first()
            if row is None or row.disabled:
                return None
            if credential and credential.startswith("pat:"):
                tok = conn.execute(
                    sa.select(s.access_tokens.c.expires_at, s.access_tokens.c.revoked_at).where(
                        s.access_tokens.c.id == int(credential[4:])
                    )
                ).first()
                if (
                    tok is None
                    or tok.revoked_at is not None
                    or (tok.expires_at is not None and tok.expires_at <= now())
                ):
                    return None
        return self._identity(row, credential)
