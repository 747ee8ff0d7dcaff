"""In-process memory of the registry's hottest reads.

Two kinds, because two kinds of answer:
- `ContentCache`: a manifest's bytes by digest. Content addressed by its digest never changes, so it
  needs no invalidation; it answers only after the repository's own row said the digest is there.
- `StampedCache`: answers that change (tag -> digest, "is this blob linked here", a tag list), each
  kept with the database's change stamp (db/changes.py) taken before it was read, and served only
  while the stamp is still that value: after any committed change, in this process at once, in the
  others as soon as they hear of it.
Policy decisions (the pull gate, access) are not cached here: they are evaluated per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from dockyard.db.changes import ChangeStamp

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class StampedCache(Generic[K, V]):
    """At most `capacity` answers and, with `weigh`, `max_weight` in all (the oldest go first).

    Stamps only grow, so an answer stored under an older stamp than the newest seen can never be
    served again: the first answer under a newer stamp drops them all, and memory holds live answers
    only (a late answer read under an older stamp is not stored)."""

    def __init__(
        self,
        changes: ChangeStamp,
        capacity: int = 10_000,
        weigh: Callable[[V], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        self._changes = changes
        self._capacity = capacity
        self._weigh = weigh
        self._max_weight = max_weight
        self._weight = 0
        self._generation: int | None = None
        self._items: dict[K, tuple[int, V, int]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        stamp = self._changes.current()
        return item[1] if stamp is not None and item[0] == stamp else None

    def stamp(self) -> int | None:
        """Take this before reading what `put` will store (None: do not store)."""
        return self._changes.current()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def weight(self) -> int:
        return self._weight

    def put(self, stamp: int | None, key: K, value: V) -> None:
        if stamp is None or self._capacity <= 0:
            return
        weight = self._weigh(value) if self._weigh is not None else 0
        if self._weigh is not None and weight > self._max_weight // 4:
            return  # one answer may not crowd out the rest
        with self._lock:
            if self._generation != stamp:
                if self._generation is not None and stamp < self._generation:
                    return
                self._items.clear()
                self._weight = 0
                self._generation = stamp
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= old[2]
            while self._items and (
                len(self._items) >= self._capacity
                or (self._weigh is not None and self._weight + weight > self._max_weight)
            ):
                self._weight -= self._items.pop(next(iter(self._items)))[2]  # the oldest entry
            self._items[key] = (stamp, value, weight)
            self._weight += weight


class ContentCache:
    """Bytes by digest, at most `max_bytes` in all (the oldest go first); items over a tenth of it
    are not kept."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        return self._items.get(digest)

    def put(self, digest: str, content: bytes) -> None:
        if len(content) > self._max // 10:
            return
        with self._lock:
            if digest in self._items:
                return
            while self._items and self._size + len(content) > self._max:
                self._size -= len(self._items.pop(next(iter(self._items))))
            self._items[digest] = content
            self._size += len(content)
