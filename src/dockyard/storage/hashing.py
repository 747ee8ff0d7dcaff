"""Incremental digest state for uploads, kept per process as a pure optimisation.

hashlib state cannot be serialised, so a chunked upload whose chunks all reach one process hashes
each byte once; if the next chunk lands on another replica the cache misses and the staged bytes
are re-read at commit. Entries are taken and kept only under the upload's lock, and staged bytes are
never rewritten, so an entry for `size` bytes describes exactly the first `size` staged bytes; an
append that fails drops its hasher. Correctness never depends on a hit.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash

DEFAULT_ALGORITHM = "sha256"


class HashCache:
    def __init__(self, capacity: int = 256) -> None:
        self._items: OrderedDict[str, tuple[int, _Hash]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def take(self, upload_id: str, offset: int) -> _Hash | None:
        """The hasher that has consumed exactly `offset` bytes of this upload, if this process has it."""
        with self._lock:
            item = self._items.pop(upload_id, None)
        if item is None or item[0] != offset:
            return None
        return item[1]

    def start(self, upload_id: str) -> _Hash:
        with self._lock:
            self._items.pop(upload_id, None)
        return hashlib.new(DEFAULT_ALGORITHM)

    def keep(self, upload_id: str, size: int, hasher: _Hash) -> None:
        with self._lock:
            self._items[upload_id] = (size, hasher)
            self._items.move_to_end(upload_id)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._items.pop(upload_id, None)
