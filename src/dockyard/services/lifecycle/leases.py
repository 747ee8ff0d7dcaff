"""Leases in the database: one process at a time runs each background duty, on any number of replicas."""

from __future__ import annotations

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now


def acquire(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take or renew the lease `name` for `ttl` seconds; False while another holder has it."""
    with db.write() as conn:
        stmt = sa.select(s.leases.c.holder, s.leases.c.expires_at).where(s.leases.c.name == name)
        if not db.is_sqlite:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        t = now()
        if row is not None and row.holder != holder and row.expires_at > t:
            return False
        conn.execute(db.upsert(s.leases, ["name"], name=name, holder=holder, expires_at=t + ttl))
        return True


def release(db: Database, name: str, holder: str) -> None:
    with db.write() as conn:
        conn.execute(sa.delete(s.leases).where(s.leases.c.name == name, s.leases.c.holder == holder))
