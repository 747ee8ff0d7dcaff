"""One contract, every driver (DESIGN.md: 'one BlobStore protocol, one parametrised test suite')."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.storage.base import BlobStore, DigestMismatch, UploadBusy, UploadNotFound, UploadOffsetMismatch
from dockyard.storage.filesystem import FilesystemBlobStore
from dockyard.storage.memory import MemoryBlobStore
from dockyard.storage.s3 import PART_SIZE, S3BlobStore
from tests.support.http import TIMEOUT
from tests.support.s3 import S3Server

DRIVERS: dict[str, Callable[[Path], BlobStore]] = {
    "filesystem": lambda p: FilesystemBlobStore(p),
    "memory": lambda p: MemoryBlobStore(),
}


@pytest.fixture(params=[*sorted(DRIVERS), "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "s3":  # a real S3-compatible server process, a bucket per test
        s3: S3Server = request.getfixturevalue("s3_server")
        return s3.store(s3.new_bucket(), prefix="registry", redirect_expiry=60)  # type: ignore[no-any-return]
    return DRIVERS[request.param](tmp_path)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_stat_read_range_delete(store: BlobStore) -> None:
    data = bytes(range(256)) * 1000
    d = sha(data)
    assert store.stat(d) is None
    assert store.put(d, [data[:1000], data[1000:]]) == len(data)
    assert store.stat(d) == len(data)
    assert b"".join(store.open_range(d)) == data
    assert b"".join(store.open_range(d, 10, 20)) == data[10:20]
    assert d in set(store.list_digests())
    assert store.delete(d) is True
    assert store.delete(d) is False
    assert store.stat(d) is None
    with pytest.raises(FileNotFoundError):
        b"".join(store.open_range(d))


def test_wrong_digest_stores_nothing(store: BlobStore) -> None:
    wrong = sha(b"other")
    with pytest.raises(DigestMismatch):
        store.put(wrong, [b"data"])
    assert store.stat(wrong) is None
    assert store.stat(sha(b"data")) is None
    assert list(store.list_digests()) == []


def test_chunked_upload_checks_offsets_and_verifies(store: BlobStore) -> None:
    store.create_upload("u1")
    assert store.append_upload("u1", 0, [b"abc"]) == 3
    with pytest.raises(UploadOffsetMismatch):
        store.append_upload("u1", 2, [b"zzz"])
    assert store.append_upload("u1", 3, [b"def"]) == 6
    assert store.upload_size("u1") == 6
    assert store.stat(sha(b"abcdef")) is None  # not visible before commit
    assert store.commit_upload("u1", sha(b"abcdef")) == 6
    assert b"".join(store.open_range(sha(b"abcdef"))) == b"abcdef"
    with pytest.raises(UploadNotFound):
        store.upload_size("u1")


def test_commit_with_sha512(store: BlobStore) -> None:
    store.create_upload("u2")
    store.append_upload("u2", 0, [b"hello"])
    d = "sha512:" + hashlib.sha512(b"hello").hexdigest()
    assert store.commit_upload("u2", d) == 5
    assert store.stat(d) == 5


def test_commit_mismatch_discards_upload(store: BlobStore) -> None:
    store.create_upload("u3")
    store.append_upload("u3", 0, [b"hello"])
    with pytest.raises(DigestMismatch):
        store.commit_upload("u3", sha(b"bye"))
    with pytest.raises(UploadNotFound):
        store.upload_size("u3")


def test_unknown_upload(store: BlobStore) -> None:
    with pytest.raises(UploadNotFound):
        store.append_upload("nope", 0, [b"x"])
    with pytest.raises(UploadNotFound):
        store.commit_upload("nope", sha(b"x"))
    store.delete_upload("nope")  # idempotent


def test_concurrent_commits_of_the_same_blob(store: BlobStore) -> None:
    data = b"x" * 300_000
    errors: list[BaseException] = []

    def push() -> None:
        try:
            store.put(sha(data), [data[:100_000], data[100_000:]])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=push) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert b"".join(store.open_range(sha(data))) == data


def test_filesystem_rehashes_when_another_process_appended(tmp_path: Path) -> None:
    """The hash cache is per process: a second store object (another replica) must still verify."""
    a, b = FilesystemBlobStore(tmp_path), FilesystemBlobStore(tmp_path)
    a.create_upload("u")
    a.append_upload("u", 0, [b"first-"])
    b.append_upload("u", 6, [b"second"])  # b has no hash state for this upload
    a.append_upload("u", 12, [b"-third"])  # a's state is stale (offset 6): must not be used
    assert a.commit_upload("u", sha(b"first-second-third")) == 18
    assert b"".join(b.open_range(sha(b"first-second-third"))) == b"first-second-third"


# --- one writer per upload ---------------------------------------------------------------------------
WAIT = 120  # a safety net against a hang, never a synchronisation: every wait below is for an event

LOST = (UploadBusy, UploadOffsetMismatch)  # "the second gets 416 or appends after the first"


def _held(chunk: bytes, entered: Any, go: Any) -> Iterator[bytes]:
    """A body that stops before its first byte (the store has checked the offset by then) until `go`."""
    entered.set()
    assert go.wait(WAIT)
    yield chunk


def test_a_second_writer_loses_while_the_first_is_appending(store: BlobStore) -> None:
    """Regression: two appends at offset 0 both wrote from 0, and the hash cache kept whichever
    writer finished last, so a commit could accept bytes that do not match the digest."""
    first, second = b"A" * 3_000_000, b"B" * 3_000_000
    store.create_upload("race")
    entered, go = threading.Event(), threading.Event()
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(store.append_upload("race", 0, _held(first, entered, go))))
    writer.start()
    assert entered.wait(WAIT)
    with pytest.raises(LOST):
        store.append_upload("race", 0, [second])
    with pytest.raises(LOST):  # nor may a commit hash (and publish) what is half written
        store.commit_upload("race", sha(second))
    go.set()
    writer.join(WAIT)
    assert result == [len(first)]
    with pytest.raises(DigestMismatch):
        store.commit_upload("race", sha(second))
    assert store.stat(sha(second)) is None


def test_concurrent_appends_from_threads_leave_one_writer(store: BlobStore) -> None:
    bodies = [bytes([65 + i]) * 2_000_000 for i in range(6)]
    store.create_upload("many")
    barrier = threading.Barrier(len(bodies))
    outcome: dict[int, object] = {}

    def append(i: int) -> None:
        barrier.wait(WAIT)
        try:
            outcome[i] = store.append_upload("many", 0, [bodies[i]])
        except LOST as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=append, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    winners = [i for i, r in outcome.items() if isinstance(r, int)]
    assert len(outcome) == len(bodies) and len(winners) == 1
    assert store.upload_size("many") == len(bodies[winners[0]])
    assert store.commit_upload("many", sha(bodies[winners[0]])) == len(bodies[winners[0]])
    assert b"".join(store.open_range(sha(bodies[winners[0]]))) == bodies[winners[0]]


def test_a_failed_append_leaves_the_upload_as_it_was(store: BlobStore) -> None:
    store.create_upload("u")
    store.append_upload("u", 0, [b"good-"])

    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("client went away")

    with pytest.raises(OSError):
        store.append_upload("u", 5, broken())
    assert store.upload_size("u") == 5
    store.append_upload("u", 5, [b"rest"])
    # Neither the staged bytes nor the hash state kept "partial".
    assert store.commit_upload("u", sha(b"good-rest")) == 9
    assert b"".join(store.open_range(sha(b"good-rest"))) == b"good-rest"


def test_committing_a_stored_digest_never_rewrites_it(store: BlobStore) -> None:
    data = b"stored once" * 1000
    store.put(sha(data), [data])
    path = store.local_path(sha(data))
    before = os.stat(path) if path else None
    store.create_upload("again")
    store.append_upload("again", 0, [data])
    assert store.commit_upload("again", sha(data)) == len(data)
    assert b"".join(store.open_range(sha(data))) == data
    with pytest.raises(UploadNotFound):  # the staged copy is discarded
        store.upload_size("again")
    if before is not None:  # the same file: not replaced by the new copy
        after = os.stat(path)  # type: ignore[arg-type]
        assert (after.st_ino, after.st_dev, after.st_nlink) == (before.st_ino, before.st_dev, 1)
    assert list(store.list_digests()) == [sha(data)]


# --- capabilities: a local path on the filesystem only, redirect URLs on S3 only -----------------------
def test_local_path_and_redirect_per_driver(store: BlobStore) -> None:
    data = b"capabilities"
    store.put(sha(data), [data])
    path, url = store.local_path(sha(data)), store.redirect_url(sha(data))
    if isinstance(store, FilesystemBlobStore):
        assert path is not None and Path(path).read_bytes() == data
        assert url is None
    elif isinstance(store, S3BlobStore):
        assert path is None and url is not None
        assert httpx.get(url, timeout=TIMEOUT).content == data  # the presigned URL serves the blob, ranges too
        assert httpx.get(url, headers={"Range": "bytes=2-5"}, timeout=TIMEOUT).content == data[2:6]
    else:
        assert path is None and url is None


def test_ranges(store: BlobStore) -> None:
    data = bytes(range(256)) * 64
    store.put(sha(data), [data])
    for start, end in [(0, None), (0, 1), (100, 200), (len(data) - 1, None), (5, len(data))]:
        assert b"".join(store.open_range(sha(data), start, end)) == data[start:end]


# --- S3: multipart uploads, any replica, nothing left behind ---------------------------------------
def _bucket_leftovers(store: S3BlobStore) -> tuple[list[str], list[str]]:
    c = store.client
    objects = [o["Key"] for o in c.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
    uploads = [u["Key"] for u in c.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])]
    return objects, uploads


def _s3_pair(s3_server: S3Server) -> tuple[S3BlobStore, S3BlobStore]:
    """Two replicas: two stores (two clients, two caches) on one bucket."""
    bucket = s3_server.new_bucket()
    return s3_server.store(bucket), s3_server.store(bucket)


def test_s3_chunks_alternate_between_replicas(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    data = os.urandom(PART_SIZE * 2 + 12345)
    batches = [data[i : i + 4 * 1024 * 1024] for i in range(0, len(data), 4 * 1024 * 1024)]  # the HTTP batches
    a.create_upload("u")
    offset = 0
    for i, batch in enumerate(batches):
        offset = (a if i % 2 else b).append_upload("u", offset, [batch])
    assert offset == len(data) == b.upload_size("u")
    _, uploads = _bucket_leftovers(a)
    assert uploads  # the parts went up as a multipart upload
    assert a.stat(sha(data)) is None
    assert b.commit_upload("u", sha(data)) == len(data)
    assert b"".join(a.open_range(sha(data))) == data
    objects, uploads = _bucket_leftovers(a)
    assert objects == [a._key(sha(data))] and uploads == []


def test_s3_mismatch_and_abort_leave_nothing(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    data = os.urandom(PART_SIZE + 100)
    a.create_upload("bad")
    a.append_upload("bad", 0, [data])
    with pytest.raises(DigestMismatch):
        b.commit_upload("bad", sha(b"other"))
    a.create_upload("gone")
    a.append_upload("gone", 0, [data])
    b.delete_upload("gone")
    with pytest.raises(UploadNotFound):
        a.append_upload("gone", len(data), [b"x"])
    assert _bucket_leftovers(a) == ([], [])


def test_s3_sha512_is_recomputed_from_the_bucket(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    data = os.urandom(PART_SIZE + 7)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    a.create_upload("u")
    a.append_upload("u", 0, [data])
    assert b.commit_upload("u", digest) == len(data)
    assert b"".join(b.open_range(digest)) == data
    assert _bucket_leftovers(a)[1] == []


def test_s3_a_failed_append_keeps_the_saved_state(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    good = os.urandom(PART_SIZE - 10)

    def broken() -> Iterator[bytes]:
        yield os.urandom(PART_SIZE)  # a part goes up, then the client goes away
        raise OSError("client went away")

    a.create_upload("u")
    a.append_upload("u", 0, [good])
    with pytest.raises(OSError):
        a.append_upload("u", len(good), broken())
    assert b.upload_size("u") == len(good)
    rest = os.urandom(PART_SIZE + 3)
    b.append_upload("u", len(good), [rest])
    assert a.commit_upload("u", sha(good + rest)) == len(good + rest)
    assert b"".join(b.open_range(sha(good + rest))) == good + rest
    assert _bucket_leftovers(a)[1] == []


# Separate processes (another worker or replica on the same storage): the filesystem driver only.
def _child_append(root: str, upload_id: str, data: bytes, entered: Any, go: Any, done: Any) -> None:
    store = FilesystemBlobStore(root)
    try:
        done.put(store.append_upload(upload_id, 0, _held(data, entered, go)))
    except BaseException as exc:
        done.put(repr(exc))


def _child_race(root: str, upload_id: str, data: bytes, barrier: Any, done: Any) -> None:
    store = FilesystemBlobStore(root)
    barrier.wait(WAIT)
    try:
        done.put(("won", store.append_upload(upload_id, 0, [data])))
    except (UploadBusy, UploadOffsetMismatch) as exc:
        done.put(("lost", type(exc).__name__))


def test_filesystem_appends_from_separate_processes_exclude_each_other(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    here = FilesystemBlobStore(tmp_path)
    theirs, ours = b"T" * 3_000_000, b"O" * 3_000_000
    here.create_upload("x")
    entered, go, done = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_child_append, args=(str(tmp_path), "x", theirs, entered, go, done))
    child.start()
    try:
        assert entered.wait(WAIT)  # the other process holds the upload, its offset checked
        with pytest.raises(UploadBusy):
            here.append_upload("x", 0, [ours])
        with pytest.raises(UploadBusy):
            here.commit_upload("x", sha(ours))
    finally:
        go.set()
        child.join(WAIT)
    assert done.get(timeout=WAIT) == len(theirs)
    # This process has no hash state for their bytes: it must read what is staged.
    with pytest.raises(DigestMismatch):
        FilesystemBlobStore(tmp_path).commit_upload("x", sha(ours))
    here.create_upload("y")
    here.append_upload("y", 0, [theirs])
    assert here.commit_upload("y", sha(theirs)) == len(theirs)


def test_filesystem_racing_processes_leave_one_writer_and_a_true_digest(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    FilesystemBlobStore(tmp_path).create_upload("r")
    bodies = [b"P" * 3_000_000, b"Q" * 3_000_000, b"R" * 3_000_000]
    barrier, done = ctx.Barrier(len(bodies)), ctx.Queue()
    procs = [ctx.Process(target=_child_race, args=(str(tmp_path), "r", b, barrier, done)) for b in bodies]
    for p in procs:
        p.start()
    for p in procs:
        p.join(WAIT)
    results = sorted(done.get(timeout=WAIT) for _ in procs)
    assert [r[0] for r in results] == ["lost", "lost", "won"], results
    staged = (tmp_path / "uploads" / "r").read_bytes()
    assert staged in bodies  # one writer's bytes, not a mix
    store = FilesystemBlobStore(tmp_path)
    assert store.commit_upload("r", sha(staged)) == len(staged)
    assert b"".join(store.open_range(sha(staged))) == staged
