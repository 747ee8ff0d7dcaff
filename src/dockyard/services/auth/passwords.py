"""Password hashing (argon2id) and a short-lived cache of successful verifications.

argon2 is deliberately slow (tens of ms); registry clients may send Basic credentials on every
request, so a verified (user, password) pair is remembered briefly by its SHA-256, never in clear.

argon2 is also deliberately memory-hard: each hash or verification holds its `memory_cost` for as
long as it runs. New hashes use OWASP's first recommended argon2id setting (19 MiB, 2 passes, one
lane) rather than argon2-cffi's default (RFC 9106 "low memory": 64 MiB, 3 passes), which made every
login a 64 MiB spike per worker; and at most `MAX_CONCURRENT` computations run at once per process
(others wait their turn), so password checks can never hold more than MAX_CONCURRENT x 64 MiB (a hash
made before this change, verified with its own parameters) however many clients log in together.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet, argon2id: m=19456 KiB, t=2, p=1.
MEMORY_COST_KIB = 19456
# OWASP's argon2id setting: 19 MiB, two passes, one lane.
TIME_COST = 2


def make_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=1)


_hasher = make_hasher()
# One at a time per process: a computation already keeps a core busy, and each holds its memory cost.
MAX_CONCURRENT = 1
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


def hash_password(password: str) -> str:
    with _slots:
        return _hasher.hash(password)


@functools.cache
def dummy_hash() -> str:
    """Verified against when there is no hash to check (unknown or disabled user...), so that answer
    takes as long as a wrong password does and its timing does not tell whether an account exists."""
    return hash_password("dockyard: no such account")


def verify_password(stored_hash: str, password: str) -> bool:
    """Checked with the parameters stored in the hash, so hashes made with other settings still verify."""
    try:
        with _slots:
            return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class VerifiedCache:
    def __init__(self, ttl: float = 10.0, capacity: int = 4096) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._items: dict[bytes, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(username: str, password: str) -> bytes:
        return hashlib.sha256(f"{username}\0{password}".encode()).digest()

    def get(self, username: str, password: str, stored_hash: str) -> bool:
        """True if this exact pair was verified against this exact stored hash within the TTL."""
        item = self._items.get(self._key(username, password))
        return item is not None and item[0] > time.monotonic() and item[1] == stored_hash

    def put(self, username: str, password: str, stored_hash: str) -> None:
        with self._lock:
            if len(self._items) >= self._capacity:
                self._items.clear()
            self._items[self._key(username, password)] = (time.monotonic() + self._ttl, stored_hash)
