"""Pull counts from the daily rollups equal the audit log's own aggregation, on SQLite and
PostgreSQL: for windows of whole days, of partial days and a hair either side of midnight, per
identity, per source address and per digest, within projects; after pruning mid-day; after
migration 0019 fills them from an existing log; and while several writers (replicas) flush pulls
of the same keys and another prunes."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services import audit as audit_module
from dockyard.services import pull_rollups
from dockyard.services.audit import Actor, AuditLog
from dockyard.services.exposure import IDENTITY, SOURCE
from tests.service.test_migration_account_uids import _upgrade, empty_database

__all__ = ["empty_database"]
DAY = 86400
T0 = 20_000 * DAY  # a UTC midnight
BEFORE_MIDNIGHT = math.nextafter(T0 + DAY, 0)  # the last representable instant of the first day
DIGESTS = ("sha256:" + "a" * 64, "sha256:" + "b" * 64)
ACTORS = (
    Actor("alice", "user", "local", "10.0.0.1"),
    Actor("alice", "user", "local", "10.0.0.2"),
    Actor("robot$ci", "robot", None, "10.0.0.1"),
    Actor("", "anonymous", None, None),
    Actor("bob", "user", "oidc", "2001:db8::1"),
)
STAMPS = (T0, T0 + 1.5, BEFORE_MIDNIGHT, T0 + DAY, T0 + DAY + 3600.25, T0 + 2 * DAY - 7, T0 + 3 * DAY + 0.5)
WINDOWS = (None, T0, T0 + 1, BEFORE_MIDNIGHT, T0 + DAY, T0 + DAY + 1800, T0 + 2 * DAY, T0 + 4 * DAY)
PROJECTS: tuple[frozenset[str] | None, ...] = (None, frozenset({"team"}), frozenset({"team", "other"}))


def _events() -> list[dict[str, Any]]:
    """Pulls of two digests in two projects and outside any, by several identities and addresses."""
    out = []
    for i, ts in enumerate(STAMPS):
        for j, actor in enumerate(ACTORS):
            for k, repository in enumerate(("team/app", "other/app", None)):
                if (i + j + k) % 3 == 0:
                    continue
                out.append({"ts": ts, "actor": actor, "repository": repository, "digest": DIGESTS[(i + k) % 2]})
    return out


def _record(audit: AuditLog, events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    for e in events:
        monkeypatch.setattr(audit_module, "now", lambda ts=e["ts"]: ts)
        if e["repository"] is None:
            audit.record_now("pull", digest=e["digest"], actor=e["actor"])
        else:
            audit.record_access("pull", repository=e["repository"], digest=e["digest"], actor=e["actor"])
    audit.flush()


def _logged(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(s.audit_events))]


def _expected(
    rows: list[dict[str, Any]],
    by: tuple[str, ...],
    since: float | None,
    until: float | None,
    projects: frozenset[str] | None,
) -> dict[tuple[Any, ...], tuple[int, float, float]]:
    """The aggregation, computed here from the log's rows."""
    out: dict[tuple[Any, ...], tuple[int, float, float]] = {}
    for r in rows:
        if r["action"] != "pull" or r["digest"] not in DIGESTS:
            continue
        if (since is not None and r["ts"] < since) or (until is not None and r["ts"] >= until):
            continue
        if projects is not None and r["project"] not in projects:
            continue
        key = tuple(r[k] for k in by)
        n, first, last = out.get(key, (0, math.inf, -math.inf))
        out[key] = (n + 1, min(first, r["ts"]), max(last, r["ts"]))
    return out


def _check_every_window(audit: AuditLog, rows: list[dict[str, Any]]) -> int:
    compared = 0
    for by in (IDENTITY, SOURCE, ("digest",)):
        for since in WINDOWS:
            for until in WINDOWS:
                if since is not None and until is not None and since >= until:
                    continue
                for projects in PROJECTS:
                    found = audit.pull_counts(list(DIGESTS), by, since, until, projects)
                    assert [r["count"] for r in found] == sorted((r["count"] for r in found), reverse=True)
                    got = {tuple(r[k] for k in by): (r["count"], r["first"], r["last"]) for r in found}
                    assert got == _expected(rows, by, since, until, projects), (by, since, until, projects)
                    compared += 1
    return compared


@pytest.fixture
def audit(database: Database) -> Iterator[AuditLog]:
    log = AuditLog(database, flush_interval=3600)
    yield log
    log.close()


def test_counts_equal_the_logs_for_every_window(audit: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(audit, _events(), monkeypatch)
    rows = _logged(audit.db)
    assert len(rows) == len(_events())
    with audit.db.engine.connect() as conn:
        rolled = conn.execute(sa.select(sa.func.count()).select_from(s.pull_rollups)).scalar_one()
    assert 0 < rolled < 2 * len(rows)  # the identity and source rows of each day, not one per pull
    assert _check_every_window(audit, rows) > 300


def test_whole_days_are_read_from_the_rollups_alone() -> None:
    """What the web UI asks (whole days, or all time) never reads the log; a partial day does."""

    def sql(since: float | None, until: float | None) -> str:
        return str(pull_rollups.counts(list(DIGESTS), IDENTITY, since, until, None))

    assert "audit_events" not in sql(None, None)
    assert "audit_events" not in sql(T0, T0 + 2 * DAY)
    assert "audit_events" in sql(T0 + 1, T0 + 2 * DAY)
    assert "audit_events" in sql(None, T0 + DAY + 1)
    assert "pull_rollups" not in sql(T0 + 1, T0 + 2)  # within one day: the log only


def test_pruning_mid_day_keeps_the_counts_equal(audit: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(audit, _events(), monkeypatch)
    cutoff = T0 + DAY + 1800  # inside the second day: its earlier pulls go, its later ones stay
    monkeypatch.setattr(audit_module, "now", lambda: cutoff + 10)
    gone = audit.prune(10)
    rows = _logged(audit.db)
    assert gone > 0 and rows and min(r["ts"] for r in rows) >= cutoff
    _check_every_window(audit, rows)
    with audit.db.engine.connect() as conn:
        days = set(conn.execute(sa.select(s.pull_rollups.c.day).distinct()).scalars())
    assert min(days) == pull_rollups.day_of(cutoff)


def test_migration_counts_the_existing_log(empty_database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db = empty_database
    _upgrade(db, "0018")
    events = _events()
    with db.engine.begin() as conn:
        for e in events:  # as 0018's log held them: straight into the table
            actor = e["actor"]
            project = e["repository"].split("/")[0] if e["repository"] else None
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events (ts, actor, actor_kind, provider, source_ip, action, project,"
                    " repository, digest, result) VALUES (:ts, :actor, :kind, :provider, :ip, 'pull', :project,"
                    " :repository, :digest, 'success')"
                ),
                {
                    "ts": e["ts"],
                    "actor": actor.name,
                    "kind": actor.kind,
                    "provider": actor.provider,
                    "ip": actor.source_ip,
                    "project": project,
                    "repository": e["repository"],
                    "digest": e["digest"],
                },
            )
    _upgrade(db, "head")
    audit = AuditLog(db, flush_interval=3600)
    try:
        assert _check_every_window(audit, _logged(db)) > 300
    finally:
        audit.close()


def test_concurrent_writers_and_a_prune_leave_counts_equal_to_the_log(database: Database) -> None:
    """Four replicas flush pulls of the same keys at once while a fifth prunes: no count is lost or
    doubled, and no writer deadlocks (PostgreSQL runs them truly at once; SQLite one at a time)."""
    logs = [AuditLog(database, flush_interval=3600, max_buffer=10_000) for _ in range(5)]
    start = threading.Barrier(5)
    errors: list[BaseException] = []
    actor = Actor("alice", "user", "local", "10.0.0.9")

    def write(log: AuditLog) -> None:
        try:
            start.wait()
            for _ in range(20):
                for digest in DIGESTS:
                    for _ in range(5):
                        log.record_access("pull", repository="team/app", digest=digest, actor=actor)
                log.flush()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    def prune(log: AuditLog) -> None:
        try:
            start.wait()
            for _ in range(5):
                log.prune(0.05)  # some of the pulls already written, their day counted again
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(log,)) for log in logs[:4]]
    threads.append(threading.Thread(target=prune, args=(logs[4],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for digest in DIGESTS:  # after the last prune: the log keeps something to count
        logs[0].record_access("pull", repository="team/app", digest=digest, actor=actor)
    for log in logs:
        log.close()
    rows = _logged(database)
    assert rows
    for by in (IDENTITY, SOURCE, ("digest",)):
        found = logs[0].pull_counts(list(DIGESTS), by)
        got = {tuple(r[k] for k in by): (r["count"], r["first"], r["last"]) for r in found}
        assert got == _expected(rows, by, None, None, None)
    assert sum(r["count"] for r in logs[0].pull_counts(list(DIGESTS), ("digest",))) == len(rows)
