"""Abandoned upload sessions: idle since their last claim or append for `upload_idle_ttl_seconds`, or
older than `upload_ttl_seconds`. Times are passed (a clock for the uploads, `at` for the expiry):
nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.registry import uploads
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings

IDLE_TTL, TTL = 100.0, 1000.0


@pytest.fixture
def svc(tmp_path: Path, database: Database) -> Iterator[Services]:
    settings = make_settings(tmp_path, database).model_copy(
        update={"upload_idle_ttl_seconds": IDLE_TTL, "upload_ttl_seconds": TTL, "gc_pace": 1.0}
    )
    services = build_services(settings, db=database)
    prepare(services)
    yield services


class Clock:
    def __init__(self) -> None:
        self.t = now()

    def __call__(self) -> float:
        return self.t


def sessions(svc: Services) -> set[str]:
    with svc.db.read() as conn:
        return set(conn.execute(sa.select(s.upload_sessions.c.id)).scalars())


def test_an_idle_upload_goes_and_one_that_keeps_receiving_chunks_stays(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    t0 = clock.t
    monkeypatch.setattr(uploads, "now", clock)
    idle, busy, writing = (svc.uploads.start("p/app", "alice") for _ in range(3))
    for step in range(1, 6):  # a chunk every 60 s: never idle for IDLE_TTL, though started 300 s ago
        clock.t = t0 + 60 * step
        svc.uploads.append("p/app", busy, [b"chunk"])
    # `writing` holds its claim (a long chunk still streaming in): not idle while the claim lasts.
    with svc.db.write() as conn:
        conn.execute(
            sa.update(s.upload_sessions)
            .where(s.upload_sessions.c.id == writing)
            .values(claim="streaming", claimed_until=t0 + 380)
        )

    assert svc.collector.expire_uploads(at=t0 + IDLE_TTL - 1) == 0
    assert svc.collector.expire_uploads(at=t0 + 310) == 1
    assert sessions(svc) == {busy, writing}
    assert svc.uploads.status("p/app", busy) == 25
    assert not (svc.settings.resolved_storage_path / "uploads" / idle).exists()
    # The claim ran out (its writer died) and nothing came since: idle.
    assert svc.collector.expire_uploads(at=t0 + 381) == 1
    assert sessions(svc) == {busy}
    assert svc.collector.expire_uploads(at=t0 + 300 + IDLE_TTL + 1) == 1
    assert sessions(svc) == set()


def test_a_session_lives_at_most_upload_ttl_however_busy(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    t0 = clock.t
    monkeypatch.setattr(uploads, "now", clock)
    busy = svc.uploads.start("p/app", "alice")
    clock.t = t0 + TTL - 10
    svc.uploads.append("p/app", busy, [b"chunk"])
    assert svc.collector.expire_uploads(at=t0 + TTL - 1) == 0
    assert svc.collector.expire_uploads(at=t0 + TTL + 1) == 1
