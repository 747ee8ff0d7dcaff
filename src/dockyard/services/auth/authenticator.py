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
from dockyard.services.auth.identity import (
    ACCESS_TOKEN,
    CLI_SECRET,
    PASSWORD,
    ROBOT,
    ROBOT_PREFIX,
    ROBOT_SECRET,
    SCANNER_SUBJECT,
    SYSTEM,
    USER,
    Identity,
)
from dockyard.services.auth.ldap import LdapProvider, LdapUnavailable
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.auth.passwords import VerifiedCache, dummy_hash, verify_password
from dockyard.services.auth.users import UserService
from dockyard.services.errors import NotFound, TooManyRequests

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

        Raises TooManyRequests while the address, or this account from this address, is locked out.
        """
        keys = keys_for(source_ip, username)
        kind = ROBOT if username.startswith(ROBOT_PREFIX) else USER
        actor = Actor(username, kind, None, source_ip, (user_agent or "")[:512] or None)
        try:
            self.guard.check(keys)
        except TooManyRequests as exc:
            # Counted on the lock; only the first refusal of a lock is an audit event, so a client
            # retrying in a loop cannot flood the log.
            if exc.detail.get("first"):
                detail = {"reason": "locked out", "retry_after": exc.retry_after}
                self.audit.record_now("login", result=DENIED, actor=actor, detail=detail)
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
        self.guard.succeeded(keys)
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

    def check_password(self, username: str, password: str, source_ip: str | None = None) -> bool:
        """Whether `password` is this local user's own password (not a token or secret), as asked
        before a change to the account; wrong answers count towards the brute-force limits."""
        keys = keys_for(source_ip, username)
        self.guard.check(keys)
        with self.db.read() as conn:
            stored = conn.execute(sa.select(s.users.c.password_hash).where(s.users.c.username == username)).scalar()
        if stored and verify_password(stored, password):
            return True
        if not stored:
            verify_password(dummy_hash(), password)
        self.guard.failed(keys)
        return False

    def unlock(self, account: str) -> dict[str, int]:
        """Clear the brute-force locks and counters of a user or robot, from every address."""
        with self.db.write() as conn:
            known = conn.execute(sa.select(s.users.c.id).where(s.users.c.username == account)).first()
            known = known or conn.execute(sa.select(s.robots.c.id).where(s.robots.c.name == account)).first()
            if known is None:
                raise NotFound(f"no user or robot named {account!r}", {"account": account})
            cleared = self.guard.unlock(conn, account)
            self.audit.record(conn, "user.unlock", reference=account, detail=cleared)
        return cleared

    def authenticate(self, username: str, password: str, fresh: bool = False) -> Identity | None:
        """The identity for these credentials, or None. The account is read from the database on
        every call, so a disabled user is refused at once; only slow hash checks are cached.

        A refused user login costs one argon2 verification whatever the reason (no such user,
        disabled, wrong password), so the answer's timing does not tell which."""
        if not username or not password:
            return None
        if username.startswith(ROBOT_PREFIX):
            return self._robot(username, password)
        if password.startswith(gen.PAT_PREFIX):
            # Found by the secret's hash alone: as fast for an unknown user as for a known one.
            return self._access_token(username, password)
        with self.db.read() as conn:
            row = conn.execute(sa.select(s.users).where(s.users.c.username == username)).first()
        if row is not None and row.disabled:
            return self._refuse(password)
        if row is None or row.provider == "ldap":
            if self.ldap is None:
                return self._refuse(password)
            return self._ldap(username, password, row, fresh)
        if row.provider == "oidc":
            if gen.matches(password, row.cli_secret_hash):
                return self._identity(row, method=CLI_SECRET)
            return self._refuse(password)
        if not row.password_hash:
            return self._refuse(password)
        if not self._verified.get(username, password, row.password_hash):
            if not verify_password(row.password_hash, password):
                return None
            self._verified.put(username, password, row.password_hash)
        return self._identity(row, method=PASSWORD)

    @staticmethod
    def _refuse(password: str) -> None:
        verify_password(dummy_hash(), password)  # as slow as a wrong password
        return None

    @staticmethod
    def _identity(row: sa.Row[tuple[object, ...]], credential: str | None = None, method: str = "") -> Identity:
        m = row._mapping
        groups = frozenset(json.loads(m["groups"])) if m["groups"] else frozenset()
        return Identity(
            m["username"],
            bool(m["is_admin"]),
            USER,
            m["provider"],
            groups,
            bool(m["can_create_projects"]),
            credential,
            uid=m["uid"],
            method=method,
        )

    def _robot(self, name: str, secret: str) -> Identity | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(s.robots).where(s.robots.c.name == name)).first()
        if row is None or row.disabled or (row.expires_at is not None and row.expires_at <= now()):
            return None
        if not gen.matches(secret, row.secret_hash):
            return None
        return Identity(name, kind=ROBOT, uid=row.uid, method=ROBOT_SECRET)

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
        return self._identity(row, credential=f"pat:{row.token_id}", method=ACCESS_TOKEN)

    def _ldap(
        self, username: str, password: str, row: sa.Row[tuple[object, ...]] | None, fresh: bool
    ) -> Identity | None:
        if self.ldap is None:
            return None
        marker = f"ldap:{row.uid}" if row is not None else None
        if marker is not None and not fresh and self._verified.get(username, password, marker):
            return self._identity(row, method=PASSWORD)  # type: ignore[arg-type]
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
        if record.disabled:
            return None
        self._verified.put(username, password, f"ldap:{record.uid}")
        return self._identity(record, method=PASSWORD)

    # --- token holders -----------------------------------------------------------------------
    def current(self, subject: str, uid: str | None, credential: str | None = None) -> Identity | None:
        """The identity behind a token as it is now; None if it may no longer act (deleted,
        disabled, expired robot, revoked access token). The token names the account by its uid, so
        an account deleted and created again under the same name does not inherit the old tokens."""
        if subject == SCANNER_SUBJECT:
            return Identity(subject, kind=SYSTEM)
        if not subject or not uid:
            return None
        return self.liveness.get_or_load((uid, credential), lambda: self._current(subject, uid, credential))

    def _current(self, subject: str, uid: str, credential: str | None) -> Identity | None:
        with self.db.read() as conn:
            if subject.startswith(ROBOT_PREFIX):
                robot = conn.execute(
                    sa.select(s.robots.c.name, s.robots.c.disabled, s.robots.c.expires_at).where(s.robots.c.uid == uid)
                ).first()
                if (
                    robot is None
                    or robot.name != subject
                    or robot.disabled
                    or (robot.expires_at is not None and robot.expires_at <= now())
                ):
                    return None
                return Identity(subject, kind=ROBOT, uid=uid)
            row = conn.execute(sa.select(s.users).where(s.users.c.uid == uid)).first()
            if row is None or row.username != subject or row.disabled:
                return None
            if credential and credential.startswith("pat:"):
                tok = conn.execute(
                    sa.select(s.access_tokens.c.expires_at, s.access_tokens.c.revoked_at).where(
                        s.access_tokens.c.id == int(credential[4:]), s.access_tokens.c.user_id == row.id
                    )
                ).first()
                if (
                    tok is None
                    or tok.revoked_at is not None
                    or (tok.expires_at is not None and tok.expires_at <= now())
                ):
                    return None
        return self._identity(row, credential)
