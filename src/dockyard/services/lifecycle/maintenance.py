"""Background duties of a server process: the collector, retention policies and the scrub.

Every replica runs this loop; a database lease per duty makes sure only one process does each at a
time, renewed while the run progresses (leases.heartbeat), and another takes over when the holder
stops renewing (crash, shutdown). A duty that takes its work from the work queue (services/queue;
the scan duty) is not exclusive: every process runs it, and the queue's claims are per item. A duty
can also be asked to run now (`request_run`, e.g. from the API): whichever replica gets the lease
runs it, and `run_status` tells how that went.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.logs import get_logger
from dockyard.services.lifecycle import leases

_log = get_logger("dockyard.maintenance")

VULNDB = "vulndb"  # the vulnerability database update: runs on request too


# Report fields that describe the run rather than work done.
_NOT_WORK = frozenset({"seconds", "kept", "deferred", "skipped"})


def did_work(summary: object) -> bool:
    """Whether a duty's result reports anything done: a non-zero count, a non-empty list, True."""
    if isinstance(summary, dict):
        return any(did_work(v) for k, v in summary.items() if k not in _NOT_WORK)
    return bool(summary)  # None, 0, False, an empty list: nothing


class Stopped(leases.LeaseLost):
    """The maintenance loop is stopping (the server or worker shuts down): the run ends at its next step."""


class _Stopping(leases.Renewable):
    """Held beside a run's lease: heartbeat() raises Stopped once the loop is asked to stop, so a long
    run (a scrub takes hours) does not hold up a shutdown; work taken from the queue goes back there,
    as for a lost lease."""

    renew_every = 0.0  # looked at on every heartbeat: it is only an Event

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def _renew(self) -> bool:
        return not self._stop.is_set()

    def _lost(self) -> Exception:
        return Stopped("the maintenance loop is stopping")


@dataclass
class Duty:
    name: str
    interval: float  # seconds; 0 = not on a schedule
    action: Callable[[], object]
    last: float = 0.0
    on_request: bool = False  # also runs when requested (request_run), scheduled or not
    due_at_start: Callable[[], bool] | None = None  # true: the first run is at once, not an interval later
    # False: every process runs it, without a lease (work it takes from the work queue is claimed per item).
    exclusive: bool = True


def request_run(db: Database, name: str, requested_by: str) -> dict[str, Any]:
    """Ask the maintenance loop to run a duty soon; a run that starts after this satisfies it."""
    with db.write() as conn:
        conn.execute(db.upsert(s.duty_runs, ["name"], name=name, requested_at=now(), requested_by=requested_by))
    return run_status(db, name)


def run_status(db: Database, name: str) -> dict[str, Any]:
    """The last request and run of a duty: `pending` until a run starts, `running` until it ends."""
    d = s.duty_runs.c
    with db.read() as conn:
        row = conn.execute(sa.select(s.duty_runs).where(d.name == name)).first()
    if row is None:
        return {"state": "idle", "requested_at": None, "started_at": None, "finished_at": None}
    pending = row.requested_at is not None and (row.started_at is None or row.requested_at > row.started_at)
    running = row.started_at is not None and (row.finished_at is None or row.finished_at < row.started_at)
    return {
        "state": "pending" if pending else "running" if running else "idle",
        "requested_at": row.requested_at,
        "requested_by": row.requested_by,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "result": json.loads(row.result) if row.result else None,
        "error": row.error,
    }


def _requested(db: Database) -> set[str]:
    d = s.duty_runs.c
    with db.read() as conn:
        stmt = sa.select(d.name).where(
            d.requested_at.is_not(None), sa.or_(d.started_at.is_(None), d.requested_at > d.started_at)
        )
        return set(conn.execute(stmt).scalars())


def _started(db: Database, name: str) -> None:
    with db.write() as conn:
        conn.execute(db.upsert(s.duty_runs, ["name"], name=name, started_at=now()))


def _finished(db: Database, name: str, summary: object, error: str | None) -> None:
    with db.write() as conn:
        conn.execute(
            sa.update(s.duty_runs)
            .where(s.duty_runs.c.name == name)
            .values(finished_at=now(), result=json.dumps(summary, default=str), error=error)
        )


class Maintenance:
    def __init__(
        self,
        db: Database,
        duties: list[Duty],
        tick: float = 1.0,
        renew_every: float | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.lease_seconds = lease_seconds  # None: leases.ttl_for's default per duty
        self.duties = [d for d in duties if d.interval > 0 or d.on_request]
        self.tick = tick
        self.renew_every = renew_every  # None: a quarter of the lease's time
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._stopping = _Stopping(self._stop)
        self._thread: threading.Thread | None = None
        self._requests_failing = False

    def start(self) -> None:
        for duty in self.duties:  # first runs one interval after start, not in the middle of it
            duty.last = time.monotonic()
            if duty.due_at_start is not None and duty.due_at_start():
                duty.last -= duty.interval
        if self.duties and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="maintenance", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            self.run_due()

    def run_due(self) -> None:
        """One pass: every duty whose interval has passed or that was requested, each under its lease."""
        requested: set[str] = set()
        if any(d.on_request for d in self.duties):
            try:
                requested = _requested(self.db)
                self._requests_failing = False
            except Exception as exc:  # the database is away: said once, not at every tick
                if not self._requests_failing:
                    _log.error("maintenance failed", duty="requests", error=str(exc))
                self._requests_failing = True
        for duty in self.duties:
            if self._stop.is_set():
                return
            scheduled = duty.interval > 0 and time.monotonic() - duty.last >= duty.interval
            if not scheduled and duty.name not in requested:
                continue
            duty.last = time.monotonic()
            if not duty.exclusive:
                try:
                    self._run(duty)
                except Stopped:
                    _log.info("maintenance stopped", duty=duty.name)
                except Exception as exc:
                    _log.error("maintenance failed", duty=duty.name, exc_info=exc)
                continue
            try:
                lease = leases.Lease(
                    self.db, duty.name, self.holder, leases.ttl_for(duty.interval, self.lease_seconds), self.renew_every
                )
                if not lease.acquire():
                    continue
                try:
                    # A requested run another replica did meanwhile (it held the lease) satisfied it.
                    if scheduled or duty.name in _requested(self.db):
                        with leases.running(lease):
                            self._run(duty)
                finally:
                    lease.release()
            except Stopped:  # shutting down: the lease is released, another replica may go on
                _log.info("maintenance stopped", duty=duty.name)
            except leases.LeaseLost:  # another process runs it now: ours stopped at its last step
                _log.warning("maintenance lease lost", duty=duty.name)
            except Exception as exc:  # a failed run is logged and retried at the next interval
                _log.error("maintenance failed", duty=duty.name, exc_info=exc)  # type, message, stack

    def _run(self, duty: Duty) -> None:
        # Debug lines bracketing each run with its holder: with their timestamps they show which
        # process ran what when (the replica test checks no exclusive duty's runs overlap).
        _log.debug("duty started", duty=duty.name, holder=self.holder)
        if duty.on_request:
            _started(self.db, duty.name)
        try:
            with leases.running(self._stopping):
                result = duty.action()
        except BaseException as exc:
            _log.debug("duty ended", duty=duty.name, holder=self.holder, error=type(exc).__name__)
            if duty.on_request:
                _finished(self.db, duty.name, None, str(exc) or type(exc).__name__)
            raise
        _log.debug("duty ended", duty=duty.name, holder=self.holder)
        summary = result.as_dict() if hasattr(result, "as_dict") else result
        if duty.on_request:
            _finished(self.db, duty.name, summary, None)
        # Most runs find nothing to do (the scan queue is looked at every 2 s): only work done is
        # worth an info line.
        log = _log.info if did_work(summary) else _log.debug
        log("maintenance", duty=duty.name, result=summary)
