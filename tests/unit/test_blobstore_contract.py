"""One contract, every driver (DESIGN.md: 'one BlobStore protocol, one parametrised test suite')."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.storage.base import BlobStore, DigestMismatch, UploadNotFound, UploadOffsetMismatch
from dockyard.storage.filesystem import FilesystemBlobStore
from dockyard.storage.memory import MemoryBlobStore

DRIVERS: dict[str, Callable[[Path], BlobStore]] = {
    "filesystem": lambda p: FilesystemBlobStore(p),
    "memory": lambda p: MemoryBlobStore(),
}


@pytest.fixture(params=sorted(DRIVERS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
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
