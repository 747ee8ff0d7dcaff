"""TtlMemo: an answer is reused for `ttl` seconds, then read again; `forget` drops one or all."""

from __future__ import annotations

import pytest

from dockyard.services import memo as memo_module
from dockyard.services.memo import TtlMemo


def test_answers_are_kept_for_ttl_then_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(memo_module.time, "monotonic", lambda: clock[0])
    reads: list[str] = []

    def load(key: str) -> str:
        reads.append(key)
        return f"{key}-{len(reads)}"

    m: TtlMemo[str, str] = TtlMemo(ttl=1.0)
    assert m.get("a", lambda: load("a")) == "a-1"
    clock[0] += 0.9
    assert m.get("a", lambda: load("a")) == "a-1"  # still young
    clock[0] += 0.1
    assert m.get("a", lambda: load("a")) == "a-2"  # ttl passed: read again
    assert m.get("b", lambda: load("b")) == "b-3"
    m.forget("a")
    assert m.get("a", lambda: load("a")) == "a-4" and m.get("b", lambda: load("b")) == "b-3"
    m.forget()
    assert m.get("b", lambda: load("b")) == "b-5"
    assert reads == ["a", "a", "b", "a", "b"]


def test_a_zero_ttl_never_reuses() -> None:
    m: TtlMemo[str, int] = TtlMemo(ttl=0)
    answers = iter(range(10))
    assert [m.get("k", lambda: next(answers)) for _ in range(3)] == [0, 1, 2]
