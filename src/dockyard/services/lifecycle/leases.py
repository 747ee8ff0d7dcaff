"""Leases in the database: one process at a time runs each background duty, on any number of replicas."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dockyard.db import schema as s
from dockyard.db.engine import Database, now


def acquire(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take or renew the lease `name` for `ttl` seconds; False while another holder has it.

    One atomic statement — insert, or take over only if ours or expired — so two processes racing
    for a free lease cannot both win (a read-then-write would let them, on PostgreSQL).
    """
    t = now()
    ins = (sqlite.insert if db.is_sqlite else postgresql.insert)(s.leases).values(
        name=name, holder=holder, expires_at=t + ttl
    )
    stmt = ins.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": ins.excluded.holder, "expires_at": ins.excluded.expires_at},
        where=sa.or_(s.leases.c.holder == holder, s.leases.c.expires_at < t),
    ).returning(s.leases.c.name)
    with db.write() as conn:
        return conn.execute(stmt).first() is not None


def release(db: Database, name: str, holder: str) -> None:
    with db.write() as conn:
        conn.execute(sa.delete(s.leases).where(s.leases.c.name == name, s.leases.c.holder == holder))
