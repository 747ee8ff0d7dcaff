"""Pulls counted per digest, UTC day, project and who pulled (or from where), beside the audit log.

The exposure report counts an image's pulls by identity and by source address over a window; read
from the audit log that is an aggregation over every pull (100,000 pulls: 30 ms on PostgreSQL,
90 ms on SQLite, per count). Here the audit log's writer adds each batch of pulls to these counts in
the same transaction (`add`), pruning keeps them equal to what the log still holds (`prune`), and a
count reads the whole days of its window from here and only its partial first and last days from
the log (`counts`): the web UI asks for whole days, so it never reads the log.

Absent values are stored as "" (a primary key column cannot be NULL): provider, source address and
project are never "" in an event, so "" reads back as None unambiguously.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database

DAY = 86400
IDENTITY, SOURCE = "identity", "source"
# Which counted columns each dimension keeps (the others are "" in its rows).
_COLUMNS = {IDENTITY: ("actor", "actor_kind", "provider"), SOURCE: ("source_ip",)}
_KEYS = ("actor", "actor_kind", "provider", "source_ip")
_NULLABLE = ("project", "provider", "source_ip")


def day_of(ts: float) -> int:
    """The UTC day of a timestamp. Float floor division is exact, so `ts >= day * DAY` exactly when
    `day_of(ts) >= day`: the log's part of a count and the rollups' part never overlap nor miss."""
    return int(ts // DAY)


def _first_whole_day(since: float) -> int:
    day = day_of(since)
    return day if day * DAY == since else day + 1


def dimension_of(by: Sequence[str]) -> str | None:
    """The dimension whose rows can count by these columns (None: only the log can)."""
    for dimension, columns in _COLUMNS.items():
        if set(by) <= {"digest", "project", *columns}:
            return dimension
    return None


def add(db: Database, conn: sa.Connection, events: Iterable[dict[str, Any]]) -> None:
    """Count these audit events' pulls, in the caller's transaction (the one writing the events).
    Keys are upserted in sorted order, so two writers never wait on each other in a cycle."""
    counted: dict[tuple[str, ...], list[Any]] = {}
    for e in events:
        if e["action"] != "pull" or not e.get("digest"):
            continue
        base = (e["digest"], day_of(e["ts"]), e.get("project") or "")
        for dimension, columns in _COLUMNS.items():
            values = {c: e.get(c) or "" for c in columns}
            key = (*base, dimension, *(values.get(c, "") for c in _KEYS))
            entry = counted.get(key)
            if entry is None:
                counted[key] = [1, e["ts"], e["ts"]]
            else:
                entry[0] += 1
                entry[1] = min(entry[1], e["ts"])
                entry[2] = max(entry[2], e["ts"])
    if not counted:
        return
    names = ("digest", "day", "project", "dimension", *_KEYS)
    rows = [
        {**dict(zip(names, key, strict=True)), "count": n, "first_ts": first, "last_ts": last}
        for key, (n, first, last) in sorted(counted.items())
    ]
    r = s.pull_rollups
    ins = db.insert(r)
    least, greatest = (sa.func.min, sa.func.max) if db.is_sqlite else (sa.func.least, sa.func.greatest)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=list(names),
            set_={
                "count": r.c.count + ins.excluded["count"],
                "first_ts": least(r.c.first_ts, ins.excluded.first_ts),
                "last_ts": greatest(r.c.last_ts, ins.excluded.last_ts),
            },
        ),
        rows,
    )


def prune(db: Database, conn: sa.Connection, cutoff: float) -> None:
    """After the log lost its events before `cutoff` (in this transaction): drop the days before
    the cutoff's and count its day again from what is left. On PostgreSQL the table is locked
    first: a batch written meanwhile is either committed before (and counted again here) or adds
    its counts after (its events were not visible to the recount)."""
    if not db.is_sqlite:
        conn.exec_driver_sql("LOCK TABLE pull_rollups IN SHARE ROW EXCLUSIVE MODE")
    day = day_of(cutoff)
    r, a = s.pull_rollups.c, s.audit_events.c
    conn.execute(sa.delete(s.pull_rollups).where(r.day <= day))
    project = sa.func.coalesce(a.project, "")
    for dimension, columns in _COLUMNS.items():
        kept = {c: sa.func.coalesce(a[c], "") if c in _NULLABLE else a[c] for c in columns}
        keys = [kept.get(c, sa.literal("")) for c in _KEYS]
        recount = (
            sa.select(a.digest, sa.literal(day), project, sa.literal(dimension), *keys,
                      sa.func.count(), sa.func.min(a.ts), sa.func.max(a.ts))
            .where(a.action == "pull", a.digest.is_not(None), a.ts >= cutoff, a.ts < (day + 1) * DAY)
            .group_by(a.digest, project, *kept.values())
        )  # fmt: skip
        names = ["digest", "day", "project", "dimension", *_KEYS, "count", "first_ts", "last_ts"]
        conn.execute(sa.insert(s.pull_rollups).from_select(names, recount))


def counts(
    digests: Sequence[str],
    by: Sequence[str],
    since: float | None,
    until: float | None,
    projects: frozenset[str] | None,
) -> sa.Select[Any]:
    """Pulls of `digests` in [since, until), in `projects` (None: any), per value of `by` with the
    first and last pull, most pulls first: the whole days from the rollups, the rest from the log.
    `by` must fit a dimension (`dimension_of`)."""
    dimension = dimension_of(by)
    assert dimension is not None, by
    # Whole days [first_day, end_day) of the window; whatever of it lies outside them is the log's.
    first_day = -math.inf if since is None else _first_whole_day(since)
    end_day = math.inf if until is None else day_of(until)
    parts: list[sa.Select[Any]] = []
    if first_day < end_day:
        r = s.pull_rollups.c
        rolled = sa.select(*(r[k].label(k) for k in by), r.count.label("n"), r.first_ts, r.last_ts).where(
            r.digest.in_(digests), r.dimension == dimension
        )
        low = None if since is None else first_day
        high = None if until is None else end_day
        parts.append(_within(rolled, r.day, low, high, r.project, projects))
        if since is not None and since < first_day * DAY:
            parts.append(_logged(digests, by, since, first_day * DAY, projects))
        if until is not None and end_day * DAY < until:
            parts.append(_logged(digests, by, end_day * DAY, until, projects))
    else:
        parts.append(_logged(digests, by, since, until, projects))
    both = sa.union_all(*parts).subquery("pulls") if len(parts) > 1 else parts[0].subquery("pulls")
    keys = [both.c[k] for k in by]
    n = sa.func.sum(both.c.n).label("count")
    return (
        sa.select(*keys, n, sa.func.min(both.c.first_ts).label("first"), sa.func.max(both.c.last_ts).label("last"))
        .group_by(*keys)
        .order_by(n.desc(), *keys)
    )


def _logged(
    digests: Sequence[str], by: Sequence[str], since: float | None, until: float | None, projects: frozenset[str] | None
) -> sa.Select[Any]:
    """The log's share of a count: its pulls in [since, until), keyed as the rollups are."""
    a = s.audit_events.c
    keys = [(sa.func.coalesce(a[k], "") if k in _NULLABLE else a[k]).label(k) for k in by]
    first, last = sa.func.min(a.ts).label("first_ts"), sa.func.max(a.ts).label("last_ts")
    stmt = (
        sa.select(*keys, sa.func.count().label("n"), first, last)
        .where(a.action == "pull", a.digest.in_(digests))
        .group_by(*keys)
    )
    return _within(stmt, a.ts, since, until, a.project, projects)


def _within(
    stmt: sa.Select[Any],
    at: sa.ColumnElement[Any],
    low: float | None,
    high: float | None,
    project: sa.ColumnElement[Any],
    projects: frozenset[str] | None,
) -> sa.Select[Any]:
    """`stmt` kept to low <= at < high (None: unbounded) and to `projects` (None: any)."""
    if low is not None:
        stmt = stmt.where(at >= low)
    if high is not None:
        stmt = stmt.where(at < high)
    if projects is not None:
        stmt = stmt.where(project.in_(sorted(projects)))
    return stmt


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A count's row as the log's aggregation would give it: "" back to None."""
    return {k: (None if k in _NULLABLE and v == "" else v) for k, v in row.items()}
