"""Filesystem BlobStore: blobs/<alg>/<xx>/<hex>, staged uploads in uploads/<id>.

An upload's state is its size and a generation: the staged file's first `size` bytes are the
upload, and what lies beyond them (an append that died, or whose claim was lost, before its state
was kept) is cut off by the next append or the commit. The running hash stays per process
(storage/hashing.py), kept with the generation of the append that fed it: after such a cut, another
append may write other bytes up to the same size, and only the generation tells them apart.

Durability: a blob is fsync'd, hard-linked into place atomically (never over an existing blob), and
its directory fsync'd, so after a crash a blob is either absent or complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from dockyard.storage.base import DigestMismatch, UploadBusy, UploadNotFound, UploadState, put_by_upload
from dockyard.storage.hashing import DEFAULT_ALGORITHM, HashCache

READ_CHUNK = 1024 * 1024
PARALLEL_HASH_BYTES = 1024 * 1024
_HASH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dockyard-hash")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemBlobStore:
    append_bytes = 4 * 1024 * 1024

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._hashes = HashCache()
        self._busy: set[str] = set()  # uploads being appended to or committed by this process
        self._busy_guard = threading.Lock()

    # --- blobs ------------------------------------------------------------------------------
    def _path(self, digest: str) -> Path:
        algorithm, encoded = digest.split(":", 1)
        return self._blobs / algorithm / encoded[:2] / encoded

    def stat(self, digest: str) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        f = open(self._path(digest), "rb")  # noqa: SIM115 - closed by the generator

        def gen() -> Iterator[bytes]:
            with f:
                f.seek(start)
                remaining = None if end is None else end - start
                while remaining is None or remaining > 0:
                    n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                    data = f.read(n)
                    if not data:
                        return
                    if remaining is not None:
                        remaining -= len(data)
                    yield data

        return gen()

    def local_path(self, digest: str) -> str | None:
        return str(self._path(digest))

    def redirect_url(self, digest: str) -> str | None:
        return None

    def delete(self, digest: str) -> bool:
        try:
            self._path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def modified_at(self, digest: str) -> float | None:
        try:
            return self._path(digest).stat().st_mtime
        except FileNotFoundError:
            return None

    def list_digests(self) -> Iterator[str]:
        for alg_dir in sorted(p for p in self._blobs.iterdir() if p.is_dir()):
            for prefix in sorted(p for p in alg_dir.iterdir() if p.is_dir()):
                for blob in sorted(prefix.iterdir()):
                    if blob.is_file():
                        yield f"{alg_dir.name}:{blob.name}"

    def put(self, digest: str, chunks: Iterable[bytes]) -> int:
        return put_by_upload(self, digest, chunks)

    # --- uploads ----------------------------------------------------------------------------
    def _upload_path(self, upload_id: str) -> Path:
        if "/" in upload_id or upload_id.startswith("."):
            raise UploadNotFound(upload_id)
        return self._uploads / upload_id

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[BinaryIO]:
        """The staged file, open and exclusively locked; UploadBusy when someone else holds it.

        flock excludes other processes on this host (and NFS clients: Linux maps it to a POSIX
        lock there); the in-process set covers threads where flock is emulated per process. The
        lock is never waited for: a second writer learns at once that it lost (416 to its client).
        """
        path = self._upload_path(upload_id)
        with self._busy_guard:
            if upload_id in self._busy:
                raise UploadBusy(upload_id)
            self._busy.add(upload_id)
        try:
            try:
                f = open(path, "r+b")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                raise UploadNotFound(upload_id) from None
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UploadBusy(upload_id) from None
                # The file may have been committed or deleted between open and lock: then this
                # descriptor is not the upload any more (after a commit it is the blob itself).
                try:
                    same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
                except FileNotFoundError:
                    same = False
                if not same:
                    raise UploadNotFound(upload_id)
                yield f
        finally:
            with self._busy_guard:
                self._busy.discard(upload_id)

    def create_upload(self, upload_id: str) -> UploadState:
        self._upload_path(upload_id).touch(exist_ok=False)
        self._hashes.keep(upload_id, 0, self._hashes.start(upload_id))
        return UploadState()

    @staticmethod
    def _cut_to(upload_id: str, f: BinaryIO, size: int) -> None:
        """Make the staged file exactly the `size` bytes the state records."""
        staged = os.fstat(f.fileno()).st_size
        if staged < size:  # the bytes the state counts are not there (removed behind our back)
            raise UploadNotFound(upload_id)
        if staged > size:
            f.truncate(size)

    def append_upload(self, upload_id: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        size = state.size
        with self._locked(upload_id) as f:
            self._cut_to(upload_id, f, size)
            # A hasher is kept under the lock together with the size it has consumed, and the first
            # `size` bytes never change under a state that counts them, so a hasher at `size`
            # describes them. At offset 0 the state is known (empty) even if another process created
            # the upload.
            gen = str(state.driver.get("gen", ""))
            hasher = self._hashes.take(upload_id, size, gen) if size else self._hashes.start(upload_id)
            f.seek(size)
            try:
                for chunk in chunks:
                    if hasher is not None and len(chunk) >= PARALLEL_HASH_BYTES:
                        # hashlib and write() both release the GIL: hash on a helper thread meanwhile.
                        hashing = _HASH_POOL.submit(hasher.update, chunk)
                        try:
                            f.write(chunk)
                        finally:
                            hashing.result()
                    else:
                        f.write(chunk)
                        if hasher is not None:
                            hasher.update(chunk)
                f.flush()
                new_size = f.tell()
                if self._fsync:
                    # Flush each appended batch now, while the server receives the next one, so the
                    # fsync at commit has little left to write.
                    os.fdatasync(f.fileno())
            except BaseException:
                # All or nothing: drop what part of this append landed (the hasher went with it),
                # so the upload is exactly as before and the client may resend from there.
                with contextlib.suppress(OSError):
                    f.truncate(size)
                raise
            new_gen = uuid.uuid4().hex if new_size != size else gen  # nothing written: the same state
            if hasher is not None:
                self._hashes.keep(upload_id, new_size, hasher, new_gen)
        return UploadState(new_size, {"gen": new_gen})

    def _digest_of_upload(self, upload_id: str, f: BinaryIO, algorithm: str, state: UploadState) -> str:
        size, gen = state.size, str(state.driver.get("gen", ""))
        hasher = self._hashes.take(upload_id, size, gen) if algorithm == DEFAULT_ALGORITHM else None
        if hasher is None:
            hasher = hashlib.new(algorithm)
            f.seek(0)
            while data := f.read(READ_CHUNK):
                hasher.update(data)
        return f"{algorithm}:{hasher.hexdigest()}"

    def commit_upload(self, upload_id: str, state: UploadState, digest: str) -> int:
        path = self._upload_path(upload_id)
        algorithm = digest.split(":", 1)[0]
        size = state.size
        # Under the upload's lock from hashing to the link: the bytes hashed are the bytes that
        # become visible, and no append can slip in between.
        with self._locked(upload_id) as f:
            self._cut_to(upload_id, f, size)
            actual = self._digest_of_upload(upload_id, f, algorithm, state)
            if actual != digest:
                self.delete_upload(upload_id)
                raise DigestMismatch(digest, actual)
            target = self._path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if self._fsync:
                os.fsync(f.fileno())
            try:
                # link(), unlike rename(), never replaces: a stored blob's bytes are never rewritten.
                os.link(path, target)
                created = True
            except FileExistsError:
                created = False
                # The stored copy stays; it counts as written now (reconcile judges orphans by age).
                with contextlib.suppress(FileNotFoundError):
                    os.utime(target)
            self.delete_upload(upload_id)
        if created and self._fsync:
            _fsync_dir(target.parent)
        return size

    def delete_upload(self, upload_id: str) -> None:
        self._hashes.forget(upload_id)
        with contextlib.suppress(FileNotFoundError, UploadNotFound):
            self._upload_path(upload_id).unlink()
