"""Local users: the first-start admin, and credential checks."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.passwords import VerifiedCache, hash_password, verify_password

ADMIN_USERNAME = "admin"


class UserService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._verified = VerifiedCache()

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
            self._insert(conn, ADMIN_USERNAME, password, is_admin=True)
        return generated

    def create(self, username: str, password: str, is_admin: bool = False) -> None:
        with self.db.write() as conn:
            self._insert(conn, username, password, is_admin)

    @staticmethod
    def _insert(conn: sa.Connection, username: str, password: str, is_admin: bool) -> None:
        conn.execute(
            sa.insert(s.users).values(
                username=username,
                password_hash=hash_password(password),
                is_admin=is_admin,
                disabled=False,
                created_at=now(),
            )
        )

    def set_password(self, username: str, password: str) -> bool:
        with self.db.write() as conn:
            return bool(
                conn.execute(
                    sa.update(s.users)
                    .where(s.users.c.username == username)
                    .values(password_hash=hash_password(password))
                ).rowcount
            )

    def authenticate(self, username: str, password: str) -> Identity | None:
        """The identity for these credentials, or None. Checked against the database every time,
        so a disabled user is refused at once; only the argon2 verification is cached."""
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(s.users.c.password_hash, s.users.c.is_admin, s.users.c.disabled).where(
                    s.users.c.username == username
                )
            ).first()
        if row is None or row.disabled or not row.password_hash:
            return None
        if not self._verified.get(username, password, row.password_hash):
            if not verify_password(row.password_hash, password):
                return None
            self._verified.put(username, password, row.password_hash)
        return Identity(username, bool(row.is_admin))

    def identity(self, username: str) -> Identity | None:
        """The current identity behind a token subject; None if the user is gone or disabled."""
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(s.users.c.is_admin, s.users.c.disabled).where(s.users.c.username == username)
            ).first()
        if row is None or row.disabled:
            return None
        return Identity(username, bool(row.is_admin))
