"""Per-project answers the pull gates ask on every manifest GET, remembered for a short time.

One replica's change is seen by it at once (`forget`); another replica's within `ttl` seconds: the
same staleness bound the account checks have (`account_check_seconds`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlMemo(Generic[K, V]):
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The answer for `key`, from `load` when none is younger than `ttl`. `load` runs outside the
        lock: two threads missing at once both read, and the later answer is kept."""
        at = time.monotonic()
        found = self._items.get(key)
        if found is not None and at - found[0] < self.ttl:
            return found[1]
        value = load()
        with self._lock:
            self._items[key] = (at, value)
        return value

    def forget(self, key: K | None = None) -> None:
        with self._lock:
            if key is None:
                self._items.clear()
            else:
                self._items.pop(key, None)
