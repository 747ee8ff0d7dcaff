"""A garbage-collection dry run reads only: it never holds the write lock (on SQLite that lock is the
whole database: a dry run of 100,000 candidates used to stop every push), and it reports exactly what
a real run then removes, cascades included."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.wiring import Services
from tests.lifecycle.conftest import image, index, push_blob, sbom_referrer, sha256


def _garbage(svc: Services) -> None:
    """A bit of every kind: an untagged index with its child and the child's referrer, layers shared
    with a kept image and with another repository, a moved tag, an orphan upload, a link still inside
    its grace period."""
    shared, other = b"shared" * 300, b"other" * 200
    image(svc, "team/keep", [shared], "v1")
    image(svc, "team/b", [other, shared], "v1")
    child = image(svc, "team/multi", [b"amd64-layer", shared], None)
    index(svc, "team/multi", child, "latest")
    sbom_referrer(svc, "team/multi", child)
    svc.collector.run()  # the pushes' own candidates are settled: what follows is the garbage
    svc.manifests.delete("team/multi", "latest")
    image(svc, "team/b", [b"v2"], "v1")  # moves the tag off the first team/b image
    push_blob(svc, "team/a", b"orphan upload")
    young = push_blob(svc, "team/a", b"young upload")
    with svc.db.write() as conn:  # inside its grace period: the run defers it
        conn.execute(sa.update(s.repository_blobs).where(s.repository_blobs.c.digest == young).values(created_at=1e12))


def test_dry_run_reports_exactly_what_the_real_run_then_removes(svc: Services) -> None:
    _garbage(svc)
    pending = svc.collector.pending()
    dry = svc.collector.run(dry_run=True)
    assert svc.collector.pending() == pending  # it changed nothing
    real = svc.collector.run()
    assert dry.as_dict() == {**real.as_dict(), "stale_uploads": 0}
    assert sorted(dry.manifests) == sorted(real.manifests) and len(real.manifests) == 4
    assert sorted(dry.links) == sorted(real.links) and sorted(dry.blobs) == sorted(real.blobs)
    assert real.deferred == 1 and real.kept > 0 and sha256(b"shared" * 300) not in real.blobs


def test_dry_run_takes_no_write_transaction(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    _garbage(svc)
    expected = svc.collector.run(dry_run=True).as_dict()

    def no_write() -> None:
        raise AssertionError("the dry run opened a write transaction")

    monkeypatch.setattr(svc.db, "write", no_write)
    assert svc.collector.run(dry_run=True).as_dict() == expected


def test_a_push_on_sqlite_commits_while_a_dry_run_is_planning(svc: Services) -> None:
    """Deterministic: the write runs in the middle of the plan (after its first manifest lookup), from
    another connection that does not wait for a lock at all (busy_timeout 0)."""
    if not svc.db.is_sqlite:
        pytest.skip("PostgreSQL takes row locks only: a read never stops a write there")
    _garbage(svc)
    path = svc.db.engine.url.database
    assert path is not None
    written: list[bool] = []

    def write_now(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not written and statement.startswith("SELECT manifests.id"):
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # what every push starts with
                other.execute("UPDATE repositories SET used_bytes = used_bytes WHERE 0")
                other.execute("COMMIT")
                written.append(True)
            finally:
                other.close()

    sa.event.listen(svc.db.engine, "after_cursor_execute", write_now)
    try:
        report = svc.collector.run(dry_run=True)
    finally:
        sa.event.remove(svc.db.engine, "after_cursor_execute", write_now)
    assert written == [True] and len(report.manifests) == 4
