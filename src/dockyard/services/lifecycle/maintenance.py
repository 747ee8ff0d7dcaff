"""Background duties of a server process: the collector, retention policies and the scrub.

Every replica runs this loop; a database lease per duty makes sure only one process does each at a
time, and another takes over when the holder stops renewing (crash, shutdown).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.db.engine import Database
from dockyard.logs import get_logger
from dockyard.services.lifecycle import leases

_log = get_logger("dockyard.maintenance")


# Report fields that describe the run rather than work done.
_NOT_WORK = frozenset({"seconds", "kept", "deferred", "skipped"})


def did_work(summary: object) -> bool:
    """Whether a duty's result reports anything done: a non-zero count, a non-empty list, True."""
    if isinstance(summary, dict):
        return any(did_work(v) for k, v in summary.items() if k not in _NOT_WORK)
    return bool(summary)  # None, 0, False, an empty list: nothing


@dataclass
class Duty:
    name: str
    interval: float  # seconds; 0 = off
    action: Callable[[], object]
    last: float = 0.0


class Maintenance:
    def __init__(self, db: Database, duties: list[Duty], tick: float = 1.0) -> None:
        self.db = db
        self.duties = [d for d in duties if d.interval > 0]
        self.tick = tick
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for duty in self.duties:  # first runs one interval after start, not in the middle of it
            duty.last = time.monotonic()
        if self.duties and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="maintenance", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            for duty in self.duties:
                if time.monotonic() - duty.last < duty.interval:
                    continue
                duty.last = time.monotonic()
                try:
                    # The lease outlives one run comfortably; it is released when the run ends.
                    if not leases.acquire(self.db, duty.name, self.holder, ttl=max(600.0, duty.interval * 2)):
                        continue
                    try:
                        result = duty.action()
                        summary = result.as_dict() if hasattr(result, "as_dict") else result
                        # Most runs find nothing to do (the scan queue is looked at every 2 s): only
                        # work done is worth an info line.
                        log = _log.info if did_work(summary) else _log.debug
                        log("maintenance", duty=duty.name, result=summary)
                    finally:
                        leases.release(self.db, duty.name, self.holder)
                except Exception as exc:  # a failed run is logged and retried at the next interval
                    _log.error("maintenance failed", duty=duty.name, exc_info=exc)  # type, message, stack
