"""Upload sessions across replicas and over time (services, on SQLite and PostgreSQL): one writer per
session through the database claim, idle expiry that reads a kept-current updated_at."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, TooManyRequests
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


class OutsideTransactions:
    """The real store, refusing to be called while the upload service holds a write transaction (on
    SQLite the one writer lock; an S3 call there would hold it for a network round trip)."""

    def __init__(self, real: FilesystemBlobStore, db: Database) -> None:
        self.real, self.calls = real, []
        self.append_bytes = real.append_bytes
        self.writing = 0
        real_write = db.write

        @contextmanager
        def write() -> Iterator[Any]:
            self.writing += 1
            try:
                with real_write() as conn:
                    yield conn
            finally:
                self.writing -= 1

        db.write = write  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            assert self.writing == 0, f"{name} called inside a write transaction"
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_no_storage_call_inside_a_write_transaction(svc: Services) -> None:
    store = OutsideTransactions(svc.store, svc.db)  # type: ignore[arg-type]
    uploads = UploadService(svc.db, store, max_sessions_per_owner=2)  # type: ignore[arg-type]
    chunked = uploads.start("p/app", "alice")
    uploads.append("p/app", chunked, [b"first-"], offset=0)
    assert uploads.status("p/app", chunked) == 6
    with pytest.raises(RangeInvalid):
        uploads.append("p/app", chunked, [b"x"], offset=2)
    assert uploads.finish("p/app", chunked, sha(b"first-last"), [b"last"], offset=6) == 10
    assert uploads.monolithic("p/app", sha(b"whole"), [b"whole"], "alice") == 5
    bad = uploads.start("p/app", "alice")
    with pytest.raises(DigestInvalid):
        uploads.finish("p/app", bad, sha(b"other"), [b"content"])
    cancelled = uploads.start("p/app", "alice")
    uploads.append("p/app", cancelled, [b"some"])
    uploads.cancel("p/app", cancelled)
    uploads.start("p/app", "alice")
    uploads.start("p/app", "alice")
    with pytest.raises(TooManyRequests):  # refused after the store made its staging area: removed again
        uploads.start("p/app", "alice")
    assert uploads.expire_abandoned(idle_ttl=-1000.0, ttl=-1000.0) == 2
    assert {"create_upload", "append_upload", "commit_upload", "delete_upload"} <= set(store.calls)
    assert list((svc.settings.resolved_storage_path / "uploads").iterdir()) == []


def test_the_row_keeps_the_state_each_append_returns(svc: Services) -> None:
    upload_id = svc.uploads.start("p/app", "alice")
    for n, piece in enumerate([b"abc", b"defg"], 1):
        svc.uploads.append("p/app", upload_id, [piece])
        state = UploadState.loads(session_row(svc, upload_id).store_state)
        assert state.size == session_row(svc, upload_id).size == [3, 7][n - 1]
        assert state.driver["gen"]  # the filesystem's generation: the state the store returned


def test_an_append_whose_claim_was_taken_over_is_not_kept(svc: Services) -> None:
    """The claim expired while the chunk was written and another request took it: the append is
    answered 416 and not counted; the store writes over its bytes with the next append."""
    upload_id = svc.uploads.start("p/app", "alice")
    svc.uploads.append("p/app", upload_id, [b"kept-"])
    real_append = svc.store.append_upload

    def slow(u: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        result = real_append(u, state, chunks)
        with svc.db.write() as conn:  # meanwhile: expired, and claimed by another request
            conn.execute(sa.update(s.upload_sessions).values(claim="other", claimed_until=now() + 60))
        return result

    svc.store.append_upload = slow  # type: ignore[method-assign]
    with pytest.raises(RangeInvalid) as lost:
        svc.uploads.append("p/app", upload_id, [b"lost-claim"])
    svc.store.append_upload = real_append  # type: ignore[method-assign]
    assert lost.value.current_size == 5
    row = session_row(svc, upload_id)
    assert UploadState.loads(row.store_state).size == 5 and row.claim == "other"
    with svc.db.write() as conn:  # the other request finished
        conn.execute(sa.update(s.upload_sessions).values(claim=None, claimed_until=None))
    assert svc.uploads.status("p/app", upload_id) == 5
    assert svc.uploads.finish("p/app", upload_id, sha(b"kept-rest"), [b"rest"], offset=5) == 9
    assert b"".join(svc.store.open_range(sha(b"kept-rest"))) == b"kept-rest"


def test_an_append_whose_session_was_cancelled_meanwhile_leaves_nothing(svc: Services) -> None:
    upload_id = svc.uploads.start("p/app", "alice")
    real_append = svc.store.append_upload

    def cancelled(u: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        result = real_append(u, state, chunks)
        with svc.db.write() as conn:  # another request cancelled it (its row went first here)
            conn.execute(sa.delete(s.upload_sessions).where(s.upload_sessions.c.id == u))
        return result

    svc.store.append_upload = cancelled  # type: ignore[method-assign]
    with pytest.raises(BlobUploadUnknown):
        svc.uploads.append("p/app", upload_id, [b"orphan"])
    svc.store.append_upload = real_append  # type: ignore[method-assign]
    assert not (svc.settings.resolved_storage_path / "uploads" / upload_id).exists()


def test_a_session_without_a_kept_state_is_unknown(svc: Services) -> None:
    """Sessions opened before migration 0013 kept their state in the store: the client starts again."""
    upload_id = svc.uploads.start("p/app", "alice")
    with svc.db.write() as conn:
        conn.execute(sa.update(s.upload_sessions).values(store_state=None))
    for call in (
        lambda: svc.uploads.status("p/app", upload_id),
        lambda: svc.uploads.append("p/app", upload_id, [b"x"]),
        lambda: svc.uploads.finish("p/app", upload_id, sha(b"")),
    ):
        with pytest.raises(BlobUploadUnknown):
            call()
    assert session_row(svc, upload_id).claim is None  # the refused claims were rolled back
