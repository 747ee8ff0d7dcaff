"""Upload sessions across replicas and over time (services, on SQLite and PostgreSQL): one writer per
session through the database claim, idle expiry that reads a kept-current updated_at."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import RangeInvalid
from dockyard.services.registry.uploads import UploadService
from dockyard.storage.base import UploadState
from dockyard.storage.filesystem import FilesystemBlobStore
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings

WAIT = 120  # a safety net against a hang; every wait is for an event


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def svc(tmp_path: Path, database: Database) -> Iterator[Services]:
    settings = make_settings(tmp_path, database).model_copy(
        update={"upload_idle_ttl_seconds": 100.0, "upload_ttl_seconds": 1000.0, "gc_pace": 1.0}
    )
    services = build_services(settings, db=database)
    prepare(services)
    yield services


def session_row(svc: Services, upload_id: str) -> Any:
    with svc.db.read() as conn:
        return conn.execute(sa.select(s.upload_sessions).where(s.upload_sessions.c.id == upload_id)).first()


class NoWrites:
    """Another replica's store that must never be asked to write: the database claim refuses first
    (replicas need not share a lock manager, so the store's lock cannot be relied on alone)."""

    def __init__(self, real: FilesystemBlobStore) -> None:
        self.real = real

    append_bytes = 4 * 1024 * 1024

    def append_upload(self, upload_id: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        raise AssertionError("a second writer reached the store")

    def commit_upload(self, upload_id: str, state: UploadState, digest: str) -> int:
        raise AssertionError("a second writer reached the store")


def test_the_session_claim_keeps_a_second_replica_out(svc: Services) -> None:
    upload_id = svc.uploads.start("p/app", "alice")
    entered, go = threading.Event(), threading.Event()

    def held() -> Iterator[bytes]:
        entered.set()
        assert go.wait(WAIT)
        yield b"first replica"

    real_append = svc.store.append_upload
    svc.store.append_upload = lambda u, state, chunks: real_append(u, state, held())  # type: ignore[method-assign]
    writer = threading.Thread(target=svc.uploads.append, args=("p/app", upload_id, [b"x"]))
    writer.start()
    try:
        assert entered.wait(WAIT)
        assert session_row(svc, upload_id).claim is not None
        other = UploadService(svc.db, NoWrites(svc.store))  # type: ignore[arg-type]
        with pytest.raises(RangeInvalid):
            other.append("p/app", upload_id, [b"second replica"])
        with pytest.raises(RangeInvalid):
            other.finish("p/app", upload_id, sha(b"second replica"))
    finally:
        go.set()
        writer.join(WAIT)
    svc.store.append_upload = real_append  # type: ignore[method-assign]
    row = session_row(svc, upload_id)
    assert row.claim is None and row.size == len(b"first replica")
    assert svc.uploads.finish("p/app", upload_id, sha(b"first replica")) == len(b"first replica")


def test_a_claim_left_by_a_dead_replica_expires(svc: Services) -> None:
    upload_id = svc.uploads.start("p/app", "alice")
    with svc.db.write() as conn:
        conn.execute(sa.update(s.upload_sessions).values(claim="dead", claimed_until=now() + 60))
    with pytest.raises(RangeInvalid):
        svc.uploads.append("p/app", upload_id, [b"data"])
    with svc.db.write() as conn:
        conn.execute(sa.update(s.upload_sessions).values(claimed_until=now() - 1))
    assert svc.uploads.append("p/app", upload_id, [b"data"]) == 4


def test_appends_keep_updated_at_current_and_idle_sessions_expire(svc: Services) -> None:
    """Regression: updated_at was never written after the start, so the 'idle' check was an age
    check, and staged data lived a full day."""
    idle, active, old = (svc.uploads.start("p/app", "alice") for _ in range(3))
    ts = now()
    times = {idle: (ts - 200, ts - 200), active: (ts - 500, ts - 500), old: (ts - 2000, ts - 2000)}
    with svc.db.write() as conn:
        for upload_id, (created, updated) in times.items():
            conn.execute(
                sa.update(s.upload_sessions)
                .where(s.upload_sessions.c.id == upload_id)
                .values(created_at=created, updated_at=updated)
            )
    for upload_id in (active, old):  # still receiving bytes
        svc.uploads.append("p/app", upload_id, [b"chunk"])
        assert session_row(svc, upload_id).updated_at >= ts
    assert session_row(svc, idle).updated_at == ts - 200
    report = svc.collector.run()
    # Idle for longer than upload_idle_ttl_seconds, or older than upload_ttl_seconds: gone, bytes too.
    assert report.stale_uploads == 2
    assert session_row(svc, idle) is None and session_row(svc, old) is None
    assert svc.uploads.status("p/app", active) == 5
    for gone in (idle, old):
        assert not (svc.settings.resolved_storage_path / "uploads" / gone).exists()
