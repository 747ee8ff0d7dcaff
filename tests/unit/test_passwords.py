"""Password hashing's memory: new hashes use the 19 MiB argon2id setting, hashes made with other
parameters still verify, and a computation holds the process's only hashing slot."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from dockyard.services.auth import passwords


def test_new_hashes_use_the_owasp_memory_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session fixture swaps in a cheap hasher; this test checks the one the code builds.
    monkeypatch.setattr(passwords, "_hasher", passwords.make_hasher())
    params = passwords.hash_password("s3cret-pass").split("$")[3]
    assert params == f"m={passwords.MEMORY_COST_KIB},t=2,p=1"
    assert passwords.MEMORY_COST_KIB * 1024 < 20 * 1024 * 1024


def test_hashes_made_with_other_parameters_still_verify() -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=2).hash("s3cret-pass")
    assert passwords.verify_password(old, "s3cret-pass")
    assert not passwords.verify_password(old, "wrong")


def test_a_computation_holds_the_only_slot() -> None:
    seen: list[bool] = []

    class Probe:
        def verify(self, stored: str, password: str) -> bool:
            # Another thread asking now would have to wait: the slot is taken.
            seen.append(passwords._slots.acquire(blocking=False))
            return True

        def hash(self, password: str) -> str:
            seen.append(passwords._slots.acquire(blocking=False))
            return "hash"

    real = passwords._hasher
    passwords._hasher = Probe()  # type: ignore[assignment]
    try:
        assert passwords.verify_password("stored", "pw")
        assert passwords.hash_password("pw") == "hash"
    finally:
        passwords._hasher = real
    assert seen == [False, False]
    assert passwords.MAX_CONCURRENT == 1
    assert passwords._slots.acquire(blocking=False)  # released afterwards
    passwords._slots.release()
