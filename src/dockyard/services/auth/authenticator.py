"""Credential checks for every kind of caller, and whether a token's holder may still act.

A password may be: a local user's password, an LDAP user's directory password, an OIDC user's CLI
secret, a personal access token (any user), or a robot's secret (user name `robot$…`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.db.engine import Database
from dockyard.logs import get_logger
from dockyard.services.audit import DENIED, FAILURE, Actor, AuditLog
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.access_tokens import AccessTokenService
from dockyard.services.auth.guard import LoginGuard, keys_for
from dockyard.services.auth.identity import (
    ACCESS_TOKEN,
    CLI_SECRET,
    PASSWORD,
    ROBOT,
    ROBOT_NAME_PREFIX,
    ROBOT_SECRET,
    SCANNER,
    SCANNER_SUBJECT,
    USER,
    Identity,
)
from dockyard.services.auth.ldap import LdapProvider, LdapUnavailable
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.auth.passwords import VerifiedCache, dummy_hash, verify_password
from dockyard.services.auth.robots import RobotService
from dockyard.services.auth.users import User, UserService
from dockyard.services.errors import NotFound, TooManyRequests

_log = get_logger("dockyard.auth")


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    identity: Identity | None
    delay: float = 0.0  # seconds the caller should wait before answering a failure


class Authenticator:
    """Checks credentials; owns no table. Accounts are read, and their use recorded, through the
    services that own them (UserService, RobotService, AccessTokenService); failed-login counters
    through the LoginGuard."""

    def __init__(
        self,
        db: Database,
        users: UserService,
        robots: RobotService,
        access_tokens: AccessTokenService,
        audit: AuditLog,
        guard: LoginGuard,
        ldap: LdapProvider | None = None,
        liveness: LivenessCache | None = None,
    ) -> None:
        self.db = db
        self.users = users
        self.robots = robots
        self.access_tokens = access_tokens
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
        kind = ROBOT if username.startswith(ROBOT_NAME_PREFIX) else USER
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
        token_id = _access_token_id(identity.credential)
        if record_success and token_id is not None:
            self.access_tokens.mark_used(token_id)
        if record_success:
            self.audit.record_now("login", actor=Actor.of(identity, source_ip, user_agent))
        return LoginOutcome(identity)

    def check_password(self, username: str, password: str, source_ip: str | None = None) -> bool:
        """Whether `password` is this local user's own password (not a token or secret), as asked
        before a change to the account; wrong answers count towards the brute-force limits."""
        keys = keys_for(source_ip, username)
        self.guard.check(keys)
        found = self.users.login_record(username=username)
        stored = found.password_hash if found is not None else None
        if stored and verify_password(stored, password):
            return True
        if not stored:
            verify_password(dummy_hash(), password)
        self.guard.failed(keys)
        return False

    def unlock(self, account: str) -> dict[str, int]:
        """Clear the brute-force locks and counters of a user or robot, from every address."""
        with self.db.write() as conn:
            if not (self.users.exists(conn, account) or self.robots.exists(conn, account)):
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
        if username.startswith(ROBOT_NAME_PREFIX):
            return self._robot(username, password)
        if password.startswith(gen.ACCESS_TOKEN_SECRET_PREFIX):
            # Found by the secret's hash alone: as fast for an unknown user as for a known one.
            return self._access_token(username, password)
        found = self.users.login_record(username=username)
        if found is not None and found.user.disabled:
            return self._refuse(password)
        if found is None or found.user.provider == "ldap":
            if self.ldap is None:
                return self._refuse(password)
            return self._ldap(username, password, found.user if found else None, fresh)
        if found.user.provider == "oidc":
            if gen.matches(password, found.cli_secret_hash):
                return self._identity(found.user, method=CLI_SECRET)
            return self._refuse(password)
        stored = found.password_hash
        if not stored:
            return self._refuse(password)
        if not self._verified.get(username, password, stored):
            if not verify_password(stored, password):
                return None
            self._verified.put(username, password, stored)
        return self._identity(found.user, method=PASSWORD)

    @staticmethod
    def _refuse(password: str) -> None:
        verify_password(dummy_hash(), password)  # as slow as a wrong password
        return None

    @staticmethod
    def _identity(user: User, credential: str | None = None, method: str = "") -> Identity:
        return Identity(
            user.username,
            user.is_admin,
            USER,
            user.provider,
            frozenset(user.groups),
            user.can_create_projects,
            credential,
            uid=user.uid,
            method=method,
        )

    def _robot(self, name: str, secret: str) -> Identity | None:
        robot = self.robots.login_record(name)
        if robot is None or not robot.live or not gen.matches(secret, robot.secret_hash):
            return None
        return Identity(name, kind=ROBOT, uid=robot.uid, method=ROBOT_SECRET)

    def _access_token(self, username: str, secret: str) -> Identity | None:
        token = self.access_tokens.find_live(secret)
        found = self.users.login_record(user_id=token.user_id) if token is not None else None
        if token is None or found is None or found.user.username != username or found.user.disabled:
            return None
        return self._identity(found.user, credential=f"{_PAT}{token.id}", method=ACCESS_TOKEN)

    def _ldap(self, username: str, password: str, user: User | None, fresh: bool) -> Identity | None:
        if self.ldap is None:
            return None
        if user is not None and not fresh and self._verified.get(username, password, f"ldap:{user.uid}"):
            return self._identity(user, method=PASSWORD)
        try:
            found = self.ldap.authenticate(username, password)
        except LdapUnavailable as exc:
            _log.warning("LDAP unavailable", error=str(exc))
            return None
        if found is None:
            return None
        with self.db.write() as conn:
            record = self.users.upsert_external(conn, username, "ldap", found.email, found.groups)
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
            return SCANNER
        if not subject or not uid:
            return None
        return self.liveness.get_or_load((uid, credential), lambda: self._current(subject, uid, credential))

    def current_if_known(
        self, subject: str, uid: str | None, credential: str | None = None
    ) -> tuple[bool, Identity | None]:
        """`current` from memory only, without blocking: (False, None) when the database would have to
        be asked (then call `current` where blocking is fine)."""
        if subject == SCANNER_SUBJECT:
            return True, SCANNER
        if not subject or not uid:
            return True, None
        known, identity = self.liveness.peek((uid, credential))
        return (True, identity) if known else (False, None)  # type: ignore[return-value]

    def _current(self, subject: str, uid: str, credential: str | None) -> Identity | None:
        if subject.startswith(ROBOT_NAME_PREFIX):
            robot = self.robots.login_record(subject, uid)
            return Identity(subject, kind=ROBOT, uid=uid) if robot is not None and robot.live else None
        found = self.users.login_record(uid=uid)
        if found is None or found.user.username != subject or found.user.disabled:
            return None
        token_id = _access_token_id(credential)
        if token_id is not None and not self.access_tokens.is_live(token_id, found.user.id):
            return None
        return self._identity(found.user, credential)


_PAT = "pat:"  # Identity.credential of a login with a personal access token: "pat:<token id>"


def _access_token_id(credential: str | None) -> int | None:
    return int(credential[len(_PAT) :]) if credential and credential.startswith(_PAT) else None
