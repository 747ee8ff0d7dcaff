"""Change stamps: a value that differs once the registry's data may have changed, so in-process read
caches (services/registry/read_cache.py) can answer from memory while it has not moved.

- Every stamp moves after each write transaction this process commits (`Database.write` bumps it),
  so within a process a change is seen at once.
- SQLite (one host, several worker processes and CLI commands on one file): the stamp is a counter
  in a small shared file beside the database, mapped into memory by every process and bumped after
  each commit, so a change made by one process is seen by the others' next read.
- PostgreSQL (replicas on several hosts): the migration 0012 has the registry's tables send
  `NOTIFY dockyard_registry` from every statement that changes them (so any writer is heard, even one
  outside Dockyard); a thread per process LISTENs and moves the stamp. The stamp is None (no caching)
  until the LISTEN runs and whenever its connection is lost, so a missed notification can never leave
  a stale answer behind. PostgreSQL delivers a notification only once its transaction is visible to
  new snapshots, so a read begun after the stamp moved sees the change.

A reader takes the stamp *before* it reads and stores its answer under that stamp: a change committed
after the stamp was taken moves it, and the answer is never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import threading
import time
from pathlib import Path

from dockyard.logs import get_logger

CHANNEL = "dockyard_registry"
HEARTBEAT_SECONDS = 5.0  # the listener proves its connection alive this often
RETRY_SECONDS = 1.0  # and tries again this often after losing it
_COUNTER = struct.Struct("<Q")
_log = get_logger("dockyard.db")


class ChangeStamp:
    """Process-local: moves after each write this process commits."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def current(self) -> int | None:
        """The stamp now; None while changes cannot be known (nothing may be cached)."""
        return self._value

    def bump(self) -> None:
        with self._lock:
            self._value += 1

    def close(self) -> None:
        return None


class SharedFileStamp(ChangeStamp):
    """A counter in a file every process on this host maps (SQLite: the processes sharing the file).
    Opened on first use: a Database is made before `serve` creates the data folder."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            with self._lock:
                if self._map is None:
                    fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        if os.fstat(fd).st_size < _COUNTER.size:
                            os.ftruncate(fd, _COUNTER.size)  # zeros: a valid counter
                        self._map = mmap.mmap(fd, _COUNTER.size)
                    finally:
                        os.close(fd)
        return self._map

    def current(self) -> int | None:
        value: int = _COUNTER.unpack_from(self._mapped())[0]
        return value

    def bump(self) -> None:
        mapped = self._mapped()
        # The read-modify-write is under an exclusive lock on the file: processes bump one at a time.
        with self._lock, open(self._path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                _COUNTER.pack_into(mapped, 0, (_COUNTER.unpack_from(mapped)[0] + 1) % 2**64)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(Exception):
                self._map.close()
            self._map = None


class NotifyStamp(ChangeStamp):
    """PostgreSQL: the local counter, moved as well by every NOTIFY on CHANNEL a listening thread hears.

    The thread starts on the first `current()` in a process (so a forked worker starts its own, and
    commands that never cache start none)."""

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._live = False
        self._pid: int | None = None
        self._stop = threading.Event()
        self._started = threading.Event()  # set once the first LISTEN attempt ended, either way

    def current(self) -> int | None:
        if self._pid != os.getpid():
            self._start()
        return self._value if self._live else None

    def wait_listening(self, timeout: float) -> bool:
        """Start listening if not yet, and wait until it does (tests; a caller that wants the cache warm)."""
        self.current()
        self._started.wait(timeout)
        return self._live

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._live = False
            self._started.clear()
            threading.Thread(target=self._run, name="dockyard-notify", daemon=True).start()

    def _run(self) -> None:
        import psycopg  # only PostgreSQL deployments need it

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.bump()  # whatever was read before the LISTEN ran is suspect
                    self._live = True
                    self._started.set()
                    proved = time.monotonic()
                    while not self._stop.is_set():  # woken each second, so close() ends it soon
                        for _ in conn.notifies(timeout=1.0):
                            self.bump()
                        if time.monotonic() - proved >= HEARTBEAT_SECONDS:
                            conn.execute("SELECT 1")  # a dead connection raises here rather than stay silent
                            proved = time.monotonic()
            except Exception as exc:
                if not self._stop.is_set():
                    _log.warning("change notifications lost; caching off until they return", error=str(exc))
            finally:
                self._live = False
                self.bump()
                self._started.set()
            self._stop.wait(RETRY_SECONDS)

    def close(self) -> None:
        self._stop.set()
        self._live = False


def stamp_for(url: str) -> ChangeStamp:
    """The stamp that suits the database at `url`."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or path.startswith("file:"):
            return ChangeStamp()  # one process only
        return SharedFileStamp(Path(path + "-changes"))
    if parsed.get_backend_name() == "postgresql":
        return NotifyStamp(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
    return ChangeStamp()
