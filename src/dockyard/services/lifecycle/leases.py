"""Leases in the database: one process at a time runs each background duty, on any number of replicas.

A lease is taken for `ttl` seconds and renewed while the work progresses: the work calls
`heartbeat()` between its steps (a candidate collected, an image or a layer scanned), which renews
the lease when a quarter of its time has passed and raises `LeaseLost` when another process holds it
now, so the work stops instead of running twice. A process that dies stops renewing, and another
takes over once the lease has expired. Every entry point of a duty (the maintenance loop, the API,
the CLI) goes through the same lease.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import Conflict

DEFAULT_TTL = 600.0


def ttl_for(interval: float, setting: float | None = None) -> float:
    """A duty's lease: the `duty_lease_seconds` setting, else ten minutes or two of its intervals if
    longer; renewed while the run progresses. It is also how long a dead holder's duty waits for
    another replica."""
    return setting if setting is not None else max(DEFAULT_TTL, interval * 2)


def holder_name(kind: str) -> str:
    """Who holds a lease, for the operator reading a refusal: kind, host, process, thread."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{threading.get_ident():x}"[-128:]


class LeaseHeld(Conflict):
    """Another process is running this duty now (HTTP 409)."""

    def __init__(self, name: str, holder: str | None) -> None:
        super().__init__(
            f"the {name} duty is running in another process ({holder or 'unknown'}): try again when it has finished",
            {"duty": name, "holder": holder},
        )


class LeaseLost(Exception):
    """Another process holds the lease now (ours expired unrenewed): the work must stop."""


def acquire(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take or renew the lease `name` for `ttl` seconds; False while another holder has it.

    One atomic statement — insert, or take over only if ours or expired — so two processes racing
    for a free lease cannot both win (a read-then-write would let them, on PostgreSQL).
    """
    t = now()
    ins = db.insert(s.leases).values(name=name, holder=holder, expires_at=t + ttl)
    stmt = ins.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": ins.excluded.holder, "expires_at": ins.excluded.expires_at},
        where=sa.or_(s.leases.c.holder == holder, s.leases.c.expires_at < t),
    ).returning(s.leases.c.name)
    with db.write() as conn:
        return conn.execute(stmt).first() is not None


def renew(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Extend our lease; False when another holder has taken it (then we must stop)."""
    with db.write() as conn:
        stmt = (
            sa.update(s.leases)
            .where(s.leases.c.name == name, s.leases.c.holder == holder)
            .values(expires_at=now() + ttl)
            .returning(s.leases.c.name)
        )
        return conn.execute(stmt).first() is not None


def release(db: Database, name: str, holder: str) -> None:
    with db.write() as conn:
        conn.execute(sa.delete(s.leases).where(s.leases.c.name == name, s.leases.c.holder == holder))


def current_holder(db: Database, name: str) -> str | None:
    with db.read() as conn:
        return conn.execute(
            sa.select(s.leases.c.holder).where(s.leases.c.name == name, s.leases.c.expires_at >= now())
        ).scalar()


class Renewable:
    """Something held for a time and renewed while the work progresses: a duty's lease, or a work
    queue item's claim (services/queue). `heartbeat()` renews it once a quarter of its time has passed
    (`renew_every`) and raises when another process holds it now."""

    renew_every: float
    _renewed: float = 0.0

    def _renew(self) -> bool:
        raise NotImplementedError

    def _lost(self) -> Exception:
        raise NotImplementedError

    def heartbeat(self) -> None:
        if time.monotonic() - self._renewed < self.renew_every:
            return
        if not self._renew():
            raise self._lost()
        self._renewed = time.monotonic()


class Lease(Renewable):
    def __init__(self, db: Database, name: str, holder: str, ttl: float, renew_every: float | None = None) -> None:
        self.db, self.name, self.holder, self.ttl = db, name, holder, ttl
        self.renew_every = ttl / 4 if renew_every is None else renew_every
        self._renewed = 0.0

    def acquire(self) -> bool:
        if not acquire(self.db, self.name, self.holder, self.ttl):
            return False
        self._renewed = time.monotonic()
        return True

    def _renew(self) -> bool:
        return renew(self.db, self.name, self.holder, self.ttl)

    def _lost(self) -> Exception:
        return LeaseLost(f"the {self.name} lease is held by another process now")

    def release(self) -> None:
        release(self.db, self.name, self.holder)


# What this thread holds while it works: the running duty's lease and the claim of the queue item
# it works on (a context variable: deep code calls heartbeat() without every function in between
# passing them along; threads it starts see none).
_current: ContextVar[tuple[Renewable, ...]] = ContextVar("dockyard_lease", default=())


@contextmanager
def running(held: Renewable) -> Iterator[Renewable]:
    """Make `held` one that heartbeat() renews, for the work done inside (it is already held)."""
    token = _current.set((*_current.get(), held))
    try:
        yield held
    finally:
        _current.reset(token)


@contextmanager
def claimed(db: Database, name: str, holder: str, ttl: float) -> Iterator[Lease]:
    """Hold the lease for the work inside, or raise LeaseHeld while another process has it."""
    lease = Lease(db, name, holder, ttl)
    if not lease.acquire():
        raise LeaseHeld(name, current_holder(db, name))
    try:
        with running(lease):
            yield lease
    finally:
        lease.release()


def heartbeat() -> None:
    """Called by long work between steps: renews what the thread holds (the running duty's lease, the
    claim of its queue item), raises LeaseLost when one is gone. Outside both it does nothing."""
    for held in _current.get():
        held.heartbeat()
