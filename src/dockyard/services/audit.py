"""The audit log: one event per push, pull, delete, login, permission change or policy decision.

Who acts is carried in a context variable that the HTTP layer sets once per request (`acting_as`),
so services record events without knowing about HTTP. Events of changes are written with
`record(conn, …)` inside the transaction of the change; pulls, which change nothing and are by far
the most frequent, are buffered and written in batches (`record_access`) so a pull costs no extra
write transaction.

The buffer is bounded, and never drops an event: at `max_buffer` queued events the caller writes the
batch itself, and while the database refuses writes the events stay queued, up to `max_pending`
(about 1.5 KiB each). Past that, `record_access` writes before queueing and lets the database's error
reach its caller: the pull (or refusal) it would record fails rather than go unrecorded, and memory
stays bounded (at most 2 x `max_pending` rows: a failed batch is put back ahead of what arrived
meanwhile) however long the database is away.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.db.lookups import PARTS_PER_STATEMENT, each, first_rows
from dockyard.oci.names import project_of
from dockyard.services import pull_rollups
from dockyard.services.auth.identity import Identity
from dockyard.services.errors import InvalidInput

SUCCESS, FAILURE, DENIED = "success", "failure", "denied"


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    kind: str  # user | robot | anonymous | system
    provider: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, identity: Identity, source_ip: str | None = None, user_agent: str | None = None) -> Actor:
        return cls(identity.subject, identity.kind, identity.provider, source_ip, (user_agent or "")[:512] or None)


SYSTEM = Actor("system", "system")
_current: ContextVar[Actor | None] = ContextVar("dockyard_actor", default=None)


def current_actor() -> Actor:
    return _current.get() or SYSTEM


def set_actor(actor: Actor) -> None:
    """Set the actor for the rest of this request (the context is per request/task)."""
    _current.set(actor)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    project: str | None = None
    repository: str | None = None
    actor: str | None = None
    action: str | None = None
    digest: str | None = None
    since: float | None = None
    until: float | None = None


EXPORT_COLUMNS = (
    "id", "ts", "actor", "actor_kind", "provider", "source_ip", "user_agent",
    "action", "project", "repository", "reference", "digest", "result", "detail",
)  # fmt: skip


# What the exposure report shows of a pull.
PULL_COLUMNS = (
    "id", "ts", "digest", "repository", "reference", "actor", "actor_kind", "provider", "source_ip", "user_agent",
)  # fmt: skip


def parse_cursor(value: str) -> tuple[float, int]:
    try:
        ts, _, event_id = value.partition("_")
        return float(ts), int(event_id)
    except ValueError:
        raise InvalidInput("invalid paging cursor", {"before": value}) from None


class AccessFields(TypedDict, total=False):
    """What a read event (`AuditLog.record_access`) says besides its action; the result defaults to
    success."""

    result: str
    repository: str | None
    reference: str | None
    digest: str | None
    detail: Any
    actor: Actor | None  # default: the current one


class EventFields(AccessFields, total=False):
    """What an event says besides its action: the keyword arguments of `AuditLog.record` (the project
    defaults to the repository's)."""

    project: str | None


class AuditLog:
    def __init__(
        self,
        db: Database,
        flush_interval: float = 1.0,
        max_buffer: int = 1000,
        retention_seconds: float = 0.0,
        max_pending: int = 10_000,
        prune_interval: float = 3600.0,
    ) -> None:
        self.db = db
        self.retention_seconds = retention_seconds  # 0: keep for ever
        self._prune_interval = prune_interval
        self._last_prune = -float("inf")
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._max_pending = max(max_pending, max_buffer)
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a full batch is waiting

    # --- writing ------------------------------------------------------------------------------
    @staticmethod
    def _row(action: str, **fields: Unpack[EventFields]) -> dict[str, Any]:
        who = fields.get("actor") or current_actor()
        repository, detail = fields.get("repository"), fields.get("detail")
        row = {
            "ts": now(),
            "actor": who.name,
            "actor_kind": who.kind,
            "provider": who.provider,
            "source_ip": who.source_ip,
            "user_agent": who.user_agent,
            "action": action,
            "project": fields.get("project") or (project_of(repository) if repository else None),
            "repository": repository,
            "reference": fields.get("reference"),
            "digest": fields.get("digest"),
            "result": fields.get("result", SUCCESS),
            "detail": json.dumps(detail, sort_keys=True) if detail is not None else None,
        }
        return row

    @staticmethod
    def _storable(row: dict[str, Any]) -> dict[str, Any]:
        # An event records what a caller sent (a user name tried at login): a NUL in it must not make
        # the row unstorable (the database refuses NUL) and so stall every queued event behind it.
        return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in row.items()}

    def _write(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Every write of events: the pulls among them are counted in the same transaction."""
        stored = [self._storable(row) for row in rows]
        conn.execute(sa.insert(s.audit_events), stored)
        pull_rollups.add(self.db, conn, stored)

    def record(self, conn: sa.Connection, action: str, **fields: Unpack[EventFields]) -> None:
        """Write one event in the caller's transaction: it commits or rolls back with the change."""
        self._write(conn, [self._row(action, **fields)])

    def record_many(self, conn: sa.Connection, action: str, events: list[dict[str, Any]]) -> None:
        """Write several events of one action in the caller's transaction, in one statement; each
        dict holds `record`'s keyword arguments."""
        if events:
            self._write(conn, [self._row(action, **e) for e in events])

    def record_now(self, action: str, **fields: Unpack[EventFields]) -> None:
        """Write one event in a transaction of its own (logins, refusals: there is no change to join)."""
        with self.db.write() as conn:
            self.record(conn, action, **fields)

    def record_access(self, action: str, **fields: Unpack[AccessFields]) -> None:
        """Queue a read event (a pull); a background thread writes queued events in batches. A full
        batch wakes it (the pull does not wait for the write). At most `max_pending` events wait: past
        that (writing cannot keep up, or the database refuses) the caller writes first, and if the
        database still refuses, its error is the caller's and the event was not queued, so memory
        stays bounded and nothing is dropped silently."""
        row = self._row(action, **fields)  # made storable when written, off the request's path
        while True:
            with self._lock:
                if len(self._buffer) < self._max_pending:
                    self._buffer.append(row)
                    queued = len(self._buffer)
                    break
            self.flush()
        if self._flusher is None:
            self.start()
        if queued >= self._max_buffer:
            self._wake.set()

    def start(self) -> None:
        """Start the background thread that writes queued events and applies the retention period."""
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._background, name="audit-flush", daemon=True)
                self._flusher.start()

    def _background(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
                if self.retention_seconds and time.monotonic() - self._last_prune >= self._prune_interval:
                    # Every replica may prune; the DELETE is idempotent, so no coordination is needed.
                    self._last_prune = time.monotonic()
                    self.prune(self.retention_seconds)
            except Exception:  # a database hiccup must not kill the thread; queued rows are kept
                time.sleep(self._flush_interval)

    def flush(self) -> None:
        """Write the queued events; when it returns, every event queued before the call is committed.
        Flushes take turns: one that found the buffer empty while the background thread's write of
        the taken rows was still open would otherwise return before those rows are visible."""
        with self._flushing:
            with self._lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                return
            try:
                with self.db.write() as conn:
                    self._write(conn, rows)
            except Exception:
                with self._lock:  # keep them for the next attempt, oldest first
                    self._buffer[:0] = rows
                raise

    def pending(self) -> int:
        """Events queued and not yet written."""
        with self._lock:
            return len(self._buffer)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with suppress(Exception):
            self.flush()

    # --- reading ------------------------------------------------------------------------------
    def _where(self, f: AuditFilter) -> list[sa.ColumnElement[bool]]:
        c = s.audit_events.c
        conds: list[sa.ColumnElement[bool]] = []
        for column, value in (
            (c.project, f.project),
            (c.repository, f.repository),
            (c.actor, f.actor),
            (c.action, f.action),
            (c.digest, f.digest),
        ):
            if value is not None:
                conds.append(column == value)
        if f.since is not None:
            conds.append(c.ts >= f.since)
        if f.until is not None:
            conds.append(c.ts < f.until)
        return conds

    def query(
        self, f: AuditFilter, limit: int = 100, before: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first (by event time; buffered pull events are written late, so ids are not in time
        order). Returns a page and the cursor for the next, older page: keyset paging on (ts, id), so
        page 1,000 costs what page 1 does."""
        self.flush()
        c = s.audit_events.c
        stmt = sa.select(s.audit_events).where(*self._where(f))
        if before is not None:
            ts, event_id = parse_cursor(before)
            stmt = stmt.where(sa.or_(c.ts < ts, sa.and_(c.ts == ts, c.id < event_id)))
        stmt = stmt.order_by(c.ts.desc(), c.id.desc()).limit(limit)
        with self.db.read() as conn:
            rows = [self._public(dict(row._mapping)) for row in conn.execute(stmt)]
        cursor = f"{rows[-1]['ts']!r}_{rows[-1]['id']}" if len(rows) == limit else None
        return rows, cursor

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        if row.get("detail"):
            row["detail"] = json.loads(row["detail"])
        return row

    def export(self, f: AuditFilter, fmt: str, batch: int = 5000) -> Iterator[str]:
        """All matching events, oldest first, as JSON lines or CSV, streamed in batches."""
        self.flush()
        c = s.audit_events.c
        after: tuple[float, int] | None = None
        if fmt == "csv":
            buf = io.StringIO()
            csv.writer(buf).writerow(EXPORT_COLUMNS)
            yield buf.getvalue()
        while True:
            stmt = sa.select(s.audit_events).where(*self._where(f))
            if after is not None:
                stmt = stmt.where(sa.or_(c.ts > after[0], sa.and_(c.ts == after[0], c.id > after[1])))
            stmt = stmt.order_by(c.ts, c.id).limit(batch)
            with self.db.read() as conn:
                rows = [dict(r._mapping) for r in conn.execute(stmt)]
            if not rows:
                return
            after = (rows[-1]["ts"], rows[-1]["id"])
            buf = io.StringIO()
            if fmt == "csv":
                writer = csv.writer(buf)
                for row in rows:
                    writer.writerow([row[k] if row[k] is not None else "" for k in EXPORT_COLUMNS])
            else:
                for row in rows:
                    buf.write(json.dumps(self._public(row), sort_keys=True) + "\n")
            yield buf.getvalue()

    # --- pulls of given digests (the exposure report) --------------------------------------------
    def _pulls_where(
        self, digests: list[str], since: float | None, until: float | None, projects: frozenset[str] | None
    ) -> list[sa.ColumnElement[bool]]:
        """Pull events of `digests` in [since, until), in `projects` (None: any). The index on
        (action, digest, ts) serves it."""
        c = s.audit_events.c
        conds: list[sa.ColumnElement[bool]] = [c.action == "pull", c.digest.in_(digests)]
        if since is not None:
            conds.append(c.ts >= since)
        if until is not None:
            conds.append(c.ts < until)
        if projects is not None:
            conds.append(c.project.in_(sorted(projects)))
        return conds

    def _pull_time(self) -> sa.ColumnElement[Any]:
        """What pulls are ordered by. On SQLite, `ts + 0`: ordered by the bare column, its planner walks
        the (action, ts) index and filters every pull of the window (all of them, for a digest rarely
        pulled) rather than read the few rows of the (action, digest, ts) index and sort them.
        PostgreSQL's statistics choose well."""
        c = s.audit_events.c
        return c.ts + 0 if self.db.is_sqlite else c.ts

    def pulls_of(
        self,
        digests: list[str],
        since: float | None = None,
        until: float | None = None,
        projects: frozenset[str] | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the pulls of `digests`, newest first, and the cursor of the next (as `query`)."""
        if not digests or projects == frozenset():
            return [], None
        self.flush()
        c = s.audit_events.c
        after = parse_cursor(before) if before is not None else None

        def pulls(of: list[str]) -> sa.Select[Any]:
            stmt = sa.select(*(c[k] for k in PULL_COLUMNS)).where(*self._pulls_where(of, since, until, projects))
            if after is not None:
                stmt = stmt.where(sa.or_(c.ts < after[0], sa.and_(c.ts == after[0], c.id < after[1])))
            return stmt

        wanted = sorted(set(digests))
        with self.db.read() as conn:
            if len(wanted) <= PARTS_PER_STATEMENT:  # each digest's newest from its index
                parts = [pulls([d]).order_by(c.ts.desc(), c.id.desc()) for d in wanted]
                rows = first_rows(conn, parts, ("-ts", "-id"), limit)
            else:
                page = pulls(wanted).order_by(self._pull_time().desc(), c.id.desc()).limit(limit)
                rows = [dict(r._mapping) for r in conn.execute(page)]
        cursor = f"{rows[-1]['ts']!r}_{rows[-1]['id']}" if len(rows) == limit else None
        return rows, cursor

    def pull_counts(
        self,
        digests: list[str],
        by: tuple[str, ...],
        since: float | None = None,
        until: float | None = None,
        projects: frozenset[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Pulls of `digests` counted per value of the columns `by` (with the first and last pull),
        most pulls first (`limit`: only the first). One grouped statement, over the daily counts
        where `by` fits theirs."""
        if not digests or projects == frozenset():
            return []
        self.flush()
        if pull_rollups.dimension_of(by) is not None:
            with self.db.read() as conn:
                stmt = pull_rollups.counts(digests, by, since, until, projects).limit(limit)
                return [pull_rollups.public(dict(r._mapping)) for r in conn.execute(stmt)]
        c = s.audit_events.c
        keys = [c[k] for k in by]
        n = sa.func.count().label("count")
        stmt = (
            sa.select(*keys, n, sa.func.min(c.ts).label("first"), sa.func.max(c.ts).label("last"))
            .where(*self._pulls_where(digests, since, until, projects))
            .group_by(*keys)
            .order_by(n.desc(), *keys)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def export_pulls(
        self,
        digests: list[str],
        since: float | None = None,
        until: float | None = None,
        projects: frozenset[str] | None = None,
        batch: int = 5000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every pull of `digests`, oldest first, in batches (keyset on (ts, id): each batch one
        indexed statement, however many pulls there are)."""
        if not digests or projects == frozenset():
            return
        self.flush()
        c = s.audit_events.c
        after: tuple[float, int] | None = None
        while True:
            stmt = sa.select(*(c[k] for k in PULL_COLUMNS)).where(*self._pulls_where(digests, since, until, projects))
            if after is not None:
                stmt = stmt.where(sa.or_(c.ts > after[0], sa.and_(c.ts == after[0], c.id > after[1])))
            with self.db.read() as conn:
                page = stmt.order_by(self._pull_time(), c.id).limit(batch)
                rows = [dict(r._mapping) for r in conn.execute(page)]
            if not rows:
                return
            yield rows
            if len(rows) < batch:
                return
            after = (rows[-1]["ts"], rows[-1]["id"])

    def last_pull_of(self, repository: str, digests: list[str]) -> dict[str, float]:
        """When each digest was last pulled from `repository`: one statement of one backwards walk of
        the (action, digest, ts) index per digest, however often it was pulled."""
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        self.flush()
        a = s.audit_events.c
        each_digest = each(self.db, wanted)
        last = (
            sa.select(a.ts)
            .where(a.action == "pull", a.digest == each_digest.c.value, a.repository == repository)
            .order_by(a.ts.desc())
            .limit(1)
            .correlate(each_digest)
            .scalar_subquery()
        )
        with self.db.read() as conn:
            found = conn.execute(sa.select(each_digest.c.value, last)).all()
        return {str(d): float(ts) for d, ts in found if ts is not None}

    def last_pulls(self, conn: sa.Connection, repository: str, since: float) -> dict[str, float]:
        """When each tag of `repository` was last pulled by tag, for pulls since `since` (retention's
        pull history). Pulls still buffered count once flushed: callers flush first."""
        a = s.audit_events.c
        rows = conn.execute(
            sa.select(a.reference, sa.func.max(a.ts))
            .where(a.repository == repository, a.action == "pull", a.ts >= since, a.reference.is_not(None))
            .group_by(a.reference)
        ).all()
        return {str(tag): float(ts) for tag, ts in rows}

    def prune(self, older_than_seconds: float) -> int:
        """Delete events older than the retention period; returns how many went."""
        cutoff = now() - older_than_seconds
        with self.db.write() as conn:
            gone = int(conn.execute(sa.delete(s.audit_events).where(s.audit_events.c.ts < cutoff)).rowcount or 0)
            pull_rollups.prune(self.db, conn, cutoff)
            return gone
