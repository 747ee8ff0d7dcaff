"""Users: the first-start admin, local accounts, and the records of LDAP and OIDC users."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import now
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.accounts import AccountService
from dockyard.services.auth.passwords import hash_password
from dockyard.services.errors import Conflict, InvalidInput, NotFound

ADMIN_USERNAME = "admin"
PROVIDERS = ("local", "ldap", "oidc")
# No `$` (robot names use it) and no `:` (it separates Basic credentials).
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")  # fullmatch: no trailing newline
USERNAME_PATTERN = f"^{_USERNAME_RE.pattern}$"  # for the API document (JSON Schema anchors)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    provider: str
    email: str | None
    is_admin: bool
    disabled: bool
    can_create_projects: bool
    groups: tuple[str, ...]
    created_at: float
    last_login_at: float | None
    uid: str = ""  # never reused: what tokens and sessions name the account by


def check_username(username: str) -> str:
    if not _USERNAME_RE.fullmatch(username):
        raise InvalidInput(
            "invalid user name: 1-255 characters, letters, digits and . _ @ + - (not starting with a symbol)",
            {"username": username},
        )
    return username


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:  # each is hashed with argon2: bound the work a request can ask for
        raise InvalidInput(f"password must be at most {MAX_PASSWORD} characters")


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(
        int(m["id"]),
        m["username"],
        m["provider"],
        m["email"],
        bool(m["is_admin"]),
        bool(m["disabled"]),
        bool(m["can_create_projects"]),
        tuple(json.loads(m["groups"])) if m["groups"] else (),
        float(m["created_at"]),
        m["last_login_at"],
        m["uid"],
    )


@dataclass(frozen=True, slots=True)
class UserLogin:
    """A user and the digests its logins are checked against (never shown by the API)."""

    user: User
    password_hash: str | None
    cli_secret_hash: str | None


class UserService(AccountService):
    """Owns the `users` table. Deleting a user asks ProjectService (owner of project_members) to drop
    the user's direct grants."""

    # --- for the authenticator ----------------------------------------------------------------
    def login_record(
        self, *, username: str | None = None, uid: str | None = None, user_id: int | None = None
    ) -> UserLogin | None:
        """The user with this name, never-reused uid or row id, with its password and CLI-secret digests."""
        u = s.users.c
        which = u.username == username if username is not None else u.uid == uid if uid is not None else u.id == user_id
        with self.db.read() as conn:
            row = conn.execute(sa.select(s.users).where(which)).first()
        if row is None:
            return None
        return UserLogin(_user(row), row.password_hash, row.cli_secret_hash)

    def exists(self, conn: sa.Connection, username: str) -> bool:
        return conn.execute(sa.select(s.users.c.id).where(s.users.c.username == username)).first() is not None

    def ensure_admin(self, password: str | None) -> str | None:
        """Create `admin` when the user table is empty. Returns the password if it was generated."""
        with self.db.read() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(s.users)).scalar():
                return None
        generated = None
        if not password:
            password = generated = secrets.token_urlsafe(18)
        with self.db.write() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(s.users)).scalar():
                return None  # another process won the race
            self._insert(conn, ADMIN_USERNAME, hash_password(password), is_admin=True)
            self.audit.record(
                conn, "user.create", reference=ADMIN_USERNAME, detail={"admin": True, "first_start": True}
            )
        return generated

    def _insert(
        self,
        conn: sa.Connection,
        username: str,
        password_hash: str | None,
        is_admin: bool = False,
        provider: str = "local",
        email: str | None = None,
        can_create_projects: bool = False,
    ) -> bool:
        """Insert the user unless one of that name exists; True if this call created it. ON CONFLICT
        DO NOTHING, so concurrent creators (first logins of one LDAP user on two replicas) neither
        fail on the unique name nor both believe they created it."""
        done = conn.execute(
            self.db.insert_ignore(
                s.users,
                username=username,
                password_hash=password_hash,
                is_admin=is_admin,
                disabled=False,
                created_at=now(),
                provider=provider,
                email=email,
                can_create_projects=can_create_projects,
                uid=s.new_uid(),
            ).returning(s.users.c.id)  # rowcount is not reliable for ON CONFLICT DO NOTHING on psycopg
        ).scalar()
        return done is not None

    def find(self, conn: sa.Connection, username: str) -> User | None:
        row = conn.execute(sa.select(s.users).where(s.users.c.username == username)).first()
        return _user(row) if row is not None else None

    def get(self, username: str) -> User:
        with self.db.read() as conn:
            user = self.find(conn, username)
        if user is None:
            raise NotFound(f"user {username!r} does not exist", {"user": username})
        return user

    def list_users(self) -> list[User]:
        with self.db.read() as conn:
            return [_user(r) for r in conn.execute(sa.select(s.users).order_by(s.users.c.username))]

    def create(
        self,
        username: str,
        password: str,
        is_admin: bool = False,
        email: str | None = None,
        can_create_projects: bool = False,
    ) -> User:
        check_username(username)
        _check_password(password)
        password_hash = hash_password(password)
        with self.db.write() as conn:
            if not self._insert(conn, username, password_hash, is_admin, "local", email, can_create_projects):
                raise Conflict(f"user {username!r} already exists", {"user": username})
            self.audit.record(
                conn,
                "user.create",
                reference=username,
                detail={"admin": is_admin, "can_create_projects": can_create_projects},
            )
            user = self.find(conn, username)
        assert user is not None
        return user

    def update(
        self,
        username: str,
        *,
        is_admin: bool | None = None,
        disabled: bool | None = None,
        can_create_projects: bool | None = None,
        email: str | None = None,
    ) -> User:
        values: dict[str, object] = {}
        if is_admin is not None:
            values["is_admin"] = is_admin
        if disabled is not None:
            values["disabled"] = disabled
        if can_create_projects is not None:
            values["can_create_projects"] = can_create_projects
        if email is not None:
            values["email"] = email
        with self.db.write() as conn:
            if self.find(conn, username) is None:
                raise NotFound(f"user {username!r} does not exist", {"user": username})
            if values:
                conn.execute(sa.update(s.users).where(s.users.c.username == username).values(**values))
                self.audit.record(conn, "user.update", reference=username, detail=values)
            user = self.find(conn, username)
        self.liveness.clear()
        assert user is not None
        return user

    def delete(self, username: str) -> None:
        with self.db.write() as conn:
            gone = conn.execute(sa.delete(s.users).where(s.users.c.username == username)).rowcount
            if not gone:
                raise NotFound(f"user {username!r} does not exist", {"user": username})
            # Direct grants go with the user; a new user of the same name must not inherit them.
            self.projects.remove_principal(conn, "user", username)
            self.audit.record(conn, "user.delete", reference=username)
        self.liveness.clear()

    def set_password(self, username: str, password: str) -> None:
        _check_password(password)
        with self.db.write() as conn:
            user = self.find(conn, username)
            if user is None:
                raise NotFound(f"user {username!r} does not exist", {"user": username})
            if user.provider != "local":
                raise InvalidInput(f"user {username!r} is managed by {user.provider}; its password is set there")
            conn.execute(
                sa.update(s.users).where(s.users.c.username == username).values(password_hash=hash_password(password))
            )
            self.audit.record(conn, "user.password", reference=username)

    def upsert_external(
        self, conn: sa.Connection, username: str, provider: str, email: str | None, groups: list[str]
    ) -> User:
        """Record an LDAP/OIDC user at login: created on first login, groups refreshed on every one."""
        if self._insert(conn, username, None, provider=provider, email=email):
            self.audit.record(conn, "user.create", reference=username, detail={"provider": provider})
        user = self.find(conn, username)
        assert user is not None
        if user.provider != provider:
            raise Conflict(f"user {username!r} exists with provider {user.provider}")
        conn.execute(
            sa.update(s.users)
            .where(s.users.c.username == username)
            .values(groups=json.dumps(sorted(set(groups))), email=email, last_login_at=now())
        )
        found = self.find(conn, username)
        assert found is not None
        return found

    def first_cli_secret(self, username: str) -> str | None:
        """A registry-login secret for an OIDC user who has none yet, or None if they have one. One
        conditional UPDATE: of concurrent first logins exactly one is shown a secret, and it works."""
        secret = gen.generate(gen.CLI_SECRET_PREFIX)
        u = s.users.c
        with self.db.write() as conn:
            done = conn.execute(
                sa.update(s.users)
                .where(u.username == username, u.cli_secret_hash.is_(None))
                .values(cli_secret_hash=gen.digest(secret))
                .returning(u.id)
            ).first()
            if done is None:
                return None
            self.audit.record(conn, "user.cli_secret", reference=username)
        return secret

    def new_cli_secret(self, username: str) -> str:
        """A fresh registry-login secret for an OIDC user (shown once; the old one stops working)."""
        secret = gen.generate(gen.CLI_SECRET_PREFIX)
        with self.db.write() as conn:
            user = self.find(conn, username)
            if user is None:
                raise NotFound(f"user {username!r} does not exist", {"user": username})
            conn.execute(
                sa.update(s.users).where(s.users.c.username == username).values(cli_secret_hash=gen.digest(secret))
            )
            self.audit.record(conn, "user.cli_secret", reference=username)
        return secret
