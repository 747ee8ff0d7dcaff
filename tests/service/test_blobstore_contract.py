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

from dockyard.storage.base import (
    BlobStore,
    DigestMismatch,
    StorageError,
    UploadBusy,
    UploadNotFound,
    UploadState,
)
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


def keep(state: UploadState) -> UploadState:
    """The state as the upload service keeps it: through its text in the database row."""
    return UploadState.loads(state.dumps())


def append(store: BlobStore, upload_id: str, state: UploadState, *chunks: bytes) -> UploadState:
    return keep(store.append_upload(upload_id, state, list(chunks)))


def test_chunked_upload_returns_states_and_verifies(store: BlobStore) -> None:
    s0 = keep(store.create_upload("u1"))
    assert s0.size == 0
    s1 = append(store, "u1", s0, b"abc")
    assert s1.size == 3
    s2 = append(store, "u1", s1, b"de", b"f")
    assert s2.size == 6
    assert append(store, "u1", s2) == s2  # nothing to append: nothing changes
    assert store.stat(sha(b"abcdef")) is None  # not visible before commit
    assert store.commit_upload("u1", s2, sha(b"abcdef")) == 6
    assert b"".join(store.open_range(sha(b"abcdef"))) == b"abcdef"
    with pytest.raises(UploadNotFound):  # committed: the staging area went with it
        store.append_upload("u1", s2, [b"x"])


def test_commit_with_sha512(store: BlobStore) -> None:
    state = append(store, "u2", store.create_upload("u2"), b"hello")
    d = "sha512:" + hashlib.sha512(b"hello").hexdigest()
    assert store.commit_upload("u2", state, d) == 5
    assert store.stat(d) == 5


def test_empty_blob(store: BlobStore) -> None:
    state = keep(store.create_upload("e"))
    assert store.commit_upload("e", state, sha(b"")) == 0
    assert b"".join(store.open_range(sha(b""))) == b""


def test_commit_mismatch_discards_upload(store: BlobStore) -> None:
    state = append(store, "u3", store.create_upload("u3"), b"hello")
    with pytest.raises(DigestMismatch):
        store.commit_upload("u3", state, sha(b"bye"))
    with pytest.raises(UploadNotFound):
        store.commit_upload("u3", state, sha(b"hello"))
    assert store.stat(sha(b"hello")) is None and list(store.list_digests()) == []


def test_deleted_upload_is_unknown(store: BlobStore) -> None:
    state = append(store, "gone", store.create_upload("gone"), b"staged")
    store.delete_upload("gone")
    with pytest.raises(UploadNotFound):
        store.append_upload("gone", state, [b"x"])
    with pytest.raises(UploadNotFound):
        store.commit_upload("gone", state, sha(b"staged"))
    store.delete_upload("gone")  # idempotent
    store.delete_upload("never")
    assert store.stat(sha(b"staged")) is None


def test_bytes_beyond_the_kept_state_do_not_count(store: BlobStore) -> None:
    """An append whose state was not kept (it died, or lost its claim, before the release): the next
    append is given the older state and writes over what that append staged, and the commit sees
    exactly what the kept states describe."""
    s1 = append(store, "u", store.create_upload("u"), b"kept-")
    append(store, "u", s1, b"never-kept-" * 1000)  # its state is dropped
    s2 = append(store, "u", s1, b"rest")
    assert s2.size == len(b"kept-rest")
    assert store.commit_upload("u", s2, sha(b"kept-rest")) == len(b"kept-rest")
    assert b"".join(store.open_range(sha(b"kept-rest"))) == b"kept-rest"


def test_a_stale_state_never_stores_bytes_under_another_digest(store: BlobStore) -> None:
    """Two appends from one state (the second after the first's claim expired), of one length: a
    commit given the state that was not kept fails, or stores exactly the bytes its digest names."""
    s0 = append(store, "u", store.create_upload("u"), b"head-")
    first = append(store, "u", s0, b"AAAA")
    append(store, "u", s0, b"BBBB")  # the one kept
    try:
        store.commit_upload("u", first, sha(b"head-AAAA"))
    except StorageError:
        assert store.stat(sha(b"head-AAAA")) is None
    else:
        assert b"".join(store.open_range(sha(b"head-AAAA"))) == b"head-AAAA"
    s0 = append(store, "v", store.create_upload("v"), b"head-")
    append(store, "v", s0, b"AAAA")
    second = append(store, "v", s0, b"BBBB")
    assert store.commit_upload("v", second, sha(b"head-BBBB")) == 9
    assert b"".join(store.open_range(sha(b"head-BBBB"))) == b"head-BBBB"


def test_filesystem_hash_of_a_dropped_append_is_not_used(tmp_path: Path) -> None:
    """Regression guard: a process's running hash of an append whose state was not kept must not
    vouch for the bytes another process wrote over it up to the same size."""
    a, b = FilesystemBlobStore(tmp_path), FilesystemBlobStore(tmp_path)
    s0 = append(a, "u", a.create_upload("u"), b"head-")
    append(a, "u", s0, b"AAAA")  # a keeps a hasher over head-AAAA at size 9
    kept = append(b, "u", s0, b"BBBB")  # another process cuts it off and writes 4 other bytes
    with pytest.raises(DigestMismatch):
        a.commit_upload("u", kept, sha(b"head-AAAA"))
    assert a.stat(sha(b"head-AAAA")) is None


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
    state = append(a, "u", a.create_upload("u"), b"first-")
    state = append(b, "u", state, b"second")  # b has no hash state for this upload
    state = append(a, "u", state, b"-third")  # a's hasher is stale (at 6 bytes): must not be used
    assert a.commit_upload("u", state, sha(b"first-second-third")) == 18
    assert b"".join(b.open_range(sha(b"first-second-third"))) == b"first-second-third"


# --- one writer per upload ---------------------------------------------------------------------------
WAIT = 120  # a safety net against a hang, never a synchronisation: every wait below is for an event


def _held(chunk: bytes, entered: Any, go: Any) -> Iterator[bytes]:
    """A body that stops before its first byte (the store holds the upload by then) until `go`."""
    entered.set()
    assert go.wait(WAIT)
    yield chunk


def test_a_second_writer_loses_while_the_first_is_appending(store: BlobStore) -> None:
    """Regression: two appends at offset 0 both wrote from 0, and the hash cache kept whichever
    writer finished last, so a commit could accept bytes that do not match the digest."""
    first, second = b"A" * 3_000_000, b"B" * 3_000_000
    s0 = keep(store.create_upload("race"))
    entered, go = threading.Event(), threading.Event()
    result: list[UploadState] = []
    writer = threading.Thread(target=lambda: result.append(store.append_upload("race", s0, _held(first, entered, go))))
    writer.start()
    assert entered.wait(WAIT)
    with pytest.raises(UploadBusy):
        store.append_upload("race", s0, [second])
    with pytest.raises(UploadBusy):  # nor may a commit hash (and publish) what is half written
        store.commit_upload("race", s0, sha(b""))
    go.set()
    writer.join(WAIT)
    assert [r.size for r in result] == [len(first)]
    with pytest.raises(DigestMismatch):
        store.commit_upload("race", keep(result[0]), sha(second))
    assert store.stat(sha(second)) is None


def test_concurrent_appends_from_threads_leave_one_writer(store: BlobStore) -> None:
    """Every writer that arrives while one holds the upload loses at once (the holder is held until
    all the others have answered)."""
    bodies = [bytes([65 + i]) * 2_000_000 for i in range(6)]
    s0 = keep(store.create_upload("many"))
    barrier = threading.Barrier(len(bodies))
    go = threading.Event()
    done = threading.Condition()
    outcome: dict[int, object] = {}

    def body(i: int) -> Iterator[bytes]:
        assert go.wait(WAIT)  # only the holder ever asks for its bytes
        yield bodies[i]

    def write(i: int) -> None:
        barrier.wait(WAIT)
        try:
            result: object = store.append_upload("many", s0, body(i))
        except UploadBusy as exc:
            result = exc
        with done:
            outcome[i] = result
            done.notify_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    with done:
        assert done.wait_for(lambda: len(outcome) == len(bodies) - 1, WAIT)
    go.set()
    for t in threads:
        t.join(WAIT)
    winners = [i for i, r in outcome.items() if isinstance(r, UploadState)]
    assert len(outcome) == len(bodies) and len(winners) == 1
    won = outcome[winners[0]]
    assert isinstance(won, UploadState) and won.size == len(bodies[winners[0]])
    assert store.commit_upload("many", keep(won), sha(bodies[winners[0]])) == len(bodies[winners[0]])
    assert b"".join(store.open_range(sha(bodies[winners[0]]))) == bodies[winners[0]]


def test_a_failed_append_leaves_the_upload_as_it_was(store: BlobStore) -> None:
    state = append(store, "u", store.create_upload("u"), b"good-")

    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("client went away")

    with pytest.raises(OSError):
        store.append_upload("u", state, broken())
    state = append(store, "u", state, b"rest")  # the given state is still the truth
    # Neither the staged bytes nor the hash state kept "partial".
    assert store.commit_upload("u", state, sha(b"good-rest")) == 9
    assert b"".join(store.open_range(sha(b"good-rest"))) == b"good-rest"


def test_committing_a_stored_digest_never_rewrites_it(store: BlobStore) -> None:
    data = b"stored once" * 1000
    store.put(sha(data), [data])
    path = store.local_path(sha(data))
    before = os.stat(path) if path else None
    state = append(store, "again", store.create_upload("again"), data)
    assert store.commit_upload("again", state, sha(data)) == len(data)
    assert b"".join(store.open_range(sha(data))) == data
    with pytest.raises(UploadNotFound):  # the staged copy is discarded
        store.append_upload("again", state, [b"x"])
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
    batches = [data[i : i + 4 * 1024 * 1024] for i in range(0, len(data), 4 * 1024 * 1024)]  # small batches
    state = keep(a.create_upload("u"))
    for i, batch in enumerate(batches):
        state = append(a if i % 2 else b, "u", state, batch)
    assert state.size == len(data)
    _, uploads = _bucket_leftovers(a)
    assert uploads  # the parts went up as a multipart upload
    assert a.stat(sha(data)) is None
    assert b.commit_upload("u", state, sha(data)) == len(data)
    assert b"".join(a.open_range(sha(data))) == data
    objects, uploads = _bucket_leftovers(a)
    assert objects == [a._key(sha(data))] and uploads == []


class _Sent:
    """Bytes the client sends in request bodies, per S3 operation (botocore's before-send event)."""

    def __init__(self, store: S3BlobStore) -> None:
        self.by_operation: dict[str, int] = {}
        store.client.meta.events.register("before-send.s3", self._count)

    def _count(self, request: Any, event_name: str, **_: Any) -> None:
        body = request.body
        size = len(body) if isinstance(body, bytes | bytearray) else int(request.headers.get("Content-Length") or 0)
        name = event_name.rsplit(".", 1)[-1]  # before-send.s3.<Operation>
        self.by_operation[name] = self.by_operation.get(name, 0) + size

    def total(self) -> int:
        return sum(self.by_operation.values())


def test_s3_appends_of_whole_parts_send_each_byte_once(s3_server: S3Server) -> None:
    """Batches of `append_bytes` go up as parts as they are; the remainder waits in a pending object
    and is copied server-side into the last part, not sent again."""
    store = s3_server.store(s3_server.new_bucket())
    sent = _Sent(store)
    data = os.urandom(store.append_bytes * 2 + 1_000_000)
    state = keep(store.create_upload("u"))
    for i in range(0, len(data), store.append_bytes):
        state = append(store, "u", state, data[i : i + store.append_bytes])
    assert store.commit_upload("u", state, sha(data)) == len(data)
    assert b"".join(store.open_range(sha(data))) == data
    assert sent.by_operation.get("UploadPart") == store.append_bytes * 2
    assert sent.by_operation.get("PutObject") == 1_000_000  # the remainder, once
    assert sent.total() < len(data) + 64 * 1024  # the rest is small XML
    assert _bucket_leftovers(store) == ([store._key(sha(data))], [])


def test_s3_a_blob_smaller_than_a_part_is_copied_into_place(s3_server: S3Server) -> None:
    store = s3_server.store(s3_server.new_bucket())
    sent = _Sent(store)
    data = os.urandom(300_000)
    state = append(store, "u", store.create_upload("u"), data)
    assert store.commit_upload("u", state, sha(data)) == len(data)
    assert b"".join(store.open_range(sha(data))) == data
    assert sent.by_operation.get("PutObject") == len(data)
    assert _bucket_leftovers(store) == ([store._key(sha(data))], [])


def test_s3_small_appends_leave_no_superseded_tails(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    pieces = [os.urandom(1_000_000) for _ in range(7)]  # 7 MB in 1 MB appends: a part at 5 MB
    state = keep(a.create_upload("u"))
    for i, piece in enumerate(pieces):
        state = append(b if i % 2 else a, "u", state, piece)
        objects, _ = _bucket_leftovers(a)
        assert len([k for k in objects if "/pending-" in k]) <= 2  # the live one and one to delete
    data = b"".join(pieces)
    assert a.commit_upload("u", state, sha(data)) == len(data)
    assert b"".join(b.open_range(sha(data))) == data
    assert _bucket_leftovers(a) == ([a._key(sha(data))], [])


def test_s3_state_is_small(s3_server: S3Server) -> None:
    """The state goes to the database after every append: a few hundred bytes, a part's entry more."""
    store = s3_server.store(s3_server.new_bucket())
    state = append(store, "u", store.create_upload("u"), os.urandom(PART_SIZE + 10))
    assert len(state.dumps()) < 600
    store.delete_upload("u")
    assert _bucket_leftovers(store) == ([], [])


def test_s3_mismatch_and_abort_leave_nothing(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    data = os.urandom(PART_SIZE + 100)
    bad = append(a, "bad", a.create_upload("bad"), data)
    with pytest.raises(DigestMismatch):
        b.commit_upload("bad", bad, sha(b"other"))
    gone = append(a, "gone", a.create_upload("gone"), data)
    assert gone.driver["upload"]  # a multipart upload, aborted by the delete
    b.delete_upload("gone")
    assert _bucket_leftovers(a) == ([], [])


def test_s3_sha512_is_recomputed_from_the_bucket(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    data = os.urandom(PART_SIZE + 7)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    state = append(a, "u", a.create_upload("u"), data)
    assert b.commit_upload("u", state, digest) == len(data)
    assert b"".join(b.open_range(digest)) == data
    assert _bucket_leftovers(a) == ([a._key(digest)], [])


def test_s3_a_failed_append_keeps_the_given_state(s3_server: S3Server) -> None:
    a, b = _s3_pair(s3_server)
    good = os.urandom(PART_SIZE - 10)

    def broken() -> Iterator[bytes]:
        yield os.urandom(PART_SIZE)  # a part goes up, then the client goes away
        raise OSError("client went away")

    state = append(a, "u", a.create_upload("u"), good)
    with pytest.raises(OSError):
        a.append_upload("u", state, broken())
    rest = os.urandom(PART_SIZE + 3)
    state = append(b, "u", state, rest)
    assert a.commit_upload("u", state, sha(good + rest)) == len(good + rest)
    assert b"".join(b.open_range(sha(good + rest))) == good + rest
    assert _bucket_leftovers(a)[1] == []


# Separate processes (another worker or replica on the same storage): the filesystem driver only.
def _child_append(root: str, upload_id: str, state: str, data: bytes, entered: Any, go: Any, done: Any) -> None:
    store = FilesystemBlobStore(root)
    try:
        done.put(store.append_upload(upload_id, UploadState.loads(state), _held(data, entered, go)).dumps())
    except BaseException as exc:
        done.put(repr(exc))


def _child_race(root: str, upload_id: str, state: str, data: bytes, barrier: Any, go: Any, done: Any) -> None:
    store = FilesystemBlobStore(root)
    barrier.wait(WAIT)

    def held() -> Iterator[bytes]:
        assert go.wait(WAIT)  # only the holder asks for its bytes, and holds until the others lost
        yield data

    try:
        done.put(("won", store.append_upload(upload_id, UploadState.loads(state), held()).dumps()))
    except UploadBusy as exc:
        done.put(("lost", type(exc).__name__))


def test_filesystem_appends_from_separate_processes_exclude_each_other(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    here = FilesystemBlobStore(tmp_path)
    theirs, ours = b"T" * 3_000_000, b"O" * 3_000_000
    s0 = keep(here.create_upload("x"))
    entered, go, done = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_child_append, args=(str(tmp_path), "x", s0.dumps(), theirs, entered, go, done))
    child.start()
    try:
        assert entered.wait(WAIT)  # the other process holds the upload
        with pytest.raises(UploadBusy):
            here.append_upload("x", s0, [ours])
        with pytest.raises(UploadBusy):
            here.commit_upload("x", s0, sha(b""))
    finally:
        go.set()
        child.join(WAIT)
    state = UploadState.loads(done.get(timeout=WAIT))
    assert state.size == len(theirs)
    # This process has no hash state for their bytes: it must read what is staged.
    with pytest.raises(DigestMismatch):
        FilesystemBlobStore(tmp_path).commit_upload("x", state, sha(ours))
    state = append(here, "y", here.create_upload("y"), theirs)
    assert here.commit_upload("y", state, sha(theirs)) == len(theirs)


def test_filesystem_racing_processes_leave_one_writer_and_a_true_digest(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    s0 = keep(FilesystemBlobStore(tmp_path).create_upload("r"))
    bodies = [b"P" * 3_000_000, b"Q" * 3_000_000, b"R" * 3_000_000]
    barrier, go, done = ctx.Barrier(len(bodies)), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_child_race, args=(str(tmp_path), "r", s0.dumps(), b, barrier, go, done)) for b in bodies
    ]
    for p in procs:
        p.start()
    try:
        results = [done.get(timeout=WAIT) for _ in range(len(bodies) - 1)]  # the losers answer first
        go.set()
        results.append(done.get(timeout=WAIT))
    finally:
        go.set()
        for p in procs:
            p.join(WAIT)
    assert [r[0] for r in results] == ["lost", "lost", "won"], results
    staged = (tmp_path / "uploads" / "r").read_bytes()
    assert staged in bodies  # one writer's bytes, not a mix
    store = FilesystemBlobStore(tmp_path)
    assert store.commit_upload("r", UploadState.loads(results[-1][1]), sha(staged)) == len(staged)
    assert b"".join(store.open_range(sha(staged))) == staged
