"""The collector's pacing (by measured contention) and batching (several candidates per transaction).

The pacer gets its clock and its sleep injected: nothing here waits for real time or asserts on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.lifecycle.pacing import Observation, Pacer
from dockyard.wiring import Services
from tests.lifecycle.conftest import image, push_blob


class Recording(Pacer):
    """A pacer that never sleeps and keeps what it was told."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, **kwargs: float) -> None:
        super().__init__(clock=clock, sleep=self._sleep, **kwargs)
        self.seen: list[Observation] = []
        self.pauses: list[float] = []
        self.gave_way = threading.Event()

    def _sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)

    def observe(self, obs: Observation, pause: bool = True) -> None:
        self.seen.append(obs)
        super().observe(obs, pause)
        if obs.lock_timeout:
            self.gave_way.set()


def quiet(kind: str = "link", items: int = 1) -> Observation:
    return Observation(kind, wait=0.0001, busy=0.002 * items, items=items)


# --- the pacer alone ---------------------------------------------------------------------------
def test_a_fixed_pace_sleeps_its_share_and_never_adapts() -> None:
    pacer = Recording(fixed=0.25)
    pacer.observe(Observation("link", wait=0.5, busy=0.5, items=1))  # would be contention if measured
    pacer.observe(quiet())
    assert pacer.duty == 0.25
    assert pacer.pauses == pytest.approx([1.0 * 3, 0.0021 * 3])  # busy 1/4 of the time


def test_no_contention_raises_the_duty_step_by_step_to_the_ceiling() -> None:
    pacer = Recording(ceiling=0.5, floor=0.1, step=0.1)
    duties = []
    for _ in range(6):
        pacer.observe(quiet())
        duties.append(pacer.duty)
    assert duties == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.5, 0.5])
    assert pacer.contended == 0


def test_a_longer_wait_for_the_transaction_halves_the_duty() -> None:
    pacer = Recording(ceiling=1.0, floor=0.05, step=0.25, wait_margin=0.001)
    for _ in range(4):
        pacer.observe(quiet())
    assert pacer.duty == 1.0
    pacer.observe(Observation("link", wait=0.0001 + 0.0009, busy=0.002, items=1))  # within the margin
    assert pacer.duty == 1.0
    pacer.observe(Observation("link", wait=0.005, busy=0.002, items=1))  # another writer held the lock
    assert pacer.duty == 0.5 and pacer.contended == 1
    for _ in range(10):
        pacer.observe(Observation("link", wait=0.005, busy=0.002, items=1))
    assert pacer.duty == 0.05  # never below the floor: the collector still makes progress


def test_a_slower_candidate_than_its_kind_has_shown_halves_the_duty() -> None:
    pacer = Recording(ceiling=1.0, floor=0.05, step=0.5, cost_tolerance=1.0)
    pacer.observe(quiet("link", items=10))  # 2 ms per link
    pacer.observe(Observation("manifest", wait=0.0001, busy=0.05, items=10))  # another kind: its own baseline
    assert pacer.duty == 1.0
    pacer.observe(Observation("link", wait=0.0001, busy=0.039, items=10))  # 3.9 ms: under twice the best
    assert pacer.duty == 1.0
    pacer.observe(Observation("link", wait=0.0001, busy=0.05, items=10))  # 5 ms: sharing the CPU or locks
    assert pacer.duty == 0.5
    assert pacer.pauses[-1] == pytest.approx(0.0501)  # busy half the time now


def test_a_lock_wait_given_up_is_contention() -> None:
    pacer = Recording(ceiling=1.0, floor=0.1, step=1.0)
    pacer.observe(quiet())
    pacer.observe(Observation("blob", wait=0.0001, busy=0.05, items=0, lock_timeout=True))
    assert pacer.duty == 0.5 and pacer.contended == 1


def test_a_pause_put_off_is_taken_with_the_next_one() -> None:
    pacer = Recording(fixed=0.5)
    pacer.observe(Observation("blob", wait=0.0, busy=0.25, items=5), pause=False)  # marked: sweep first
    assert pacer.pauses == []
    pacer.observe(Observation("sweep", wait=0.0, busy=0.5, items=5))
    assert pacer.pauses == pytest.approx([0.75])


def test_pace_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="floor"):
        Pacer(ceiling=0.1, floor=0.2)


# --- the collector's transactions ---------------------------------------------------------------
def _garbage(svc: Services, count: int) -> set[str]:
    """Untagged images, each with its own layer: every manifest, link and blob of them is garbage."""
    return {image(svc, "team/a", [f"layer {i}".encode() * 50], None) for i in range(count)}


def _writes(svc: Services) -> list[int]:
    """Collects a 1 for every write transaction committed from now on."""
    commits: list[int] = []

    def commit(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("dockyard_write"):
            commits.append(1)

    sa.event.listen(svc.db.engine, "commit", commit)
    return commits


def test_candidates_are_decided_several_per_transaction(svc: Services) -> None:
    _garbage(svc, 12)  # 12 manifests, 13 links and 13 blobs (their layers and one config)
    svc.collector.pacer = pacer = Recording(fixed=1.0)
    svc.collector.budget = 3600.0  # the batch size alone bounds a transaction here
    commits = _writes(svc)
    report = svc.collector.run()
    assert (len(report.manifests), len(report.links), len(report.blobs)) == (12, 13, 13)  # one shared config
    assert len(commits) <= 6, f"{len(commits)} write transactions for 38 decisions: not batched"
    assert max(obs.items for obs in pacer.seen) > 1
    with svc.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.blobs)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(s.gc_queue)).scalar() == 0


def test_a_transaction_ends_when_its_time_budget_is_spent(svc: Services) -> None:
    _garbage(svc, 6)
    ticks = iter(range(1_000_000))
    svc.collector.pacer = pacer = Recording(clock=lambda: float(next(ticks)), fixed=1.0)
    svc.collector.budget = 3.0  # each reading of this clock is a second later: three candidates fit
    report = svc.collector.run()
    assert (len(report.manifests), len(report.links), len(report.blobs)) == (6, 7, 7)
    assert {obs.items for obs in pacer.seen} <= {1, 2, 3} and max(obs.items for obs in pacer.seen) == 3


def test_a_push_holding_a_blob_makes_the_batch_give_way_not_wait(svc: Services) -> None:
    """PostgreSQL: a batch holds the locks of several candidates, so it must not wait for a push (a
    cycle would make PostgreSQL abort one of them, maybe the push). It gives up the lock wait, rolls
    back, and takes its candidates one at a time, waiting as a push does."""
    if svc.db.is_sqlite:
        pytest.skip("SQLite serialises write transactions: there are no row locks to wait for")
    data = b"a layer a manifest push is referencing right now" * 20
    digest = push_blob(svc, "team/a", data)
    _garbage(svc, 2)
    svc.blobs.delete("team/a", digest)  # no link left: its blob is a candidate
    svc.collector.pacer = pacer = Recording(fixed=1.0)
    svc.collector.budget = 3600.0
    errors: list[BaseException] = []
    with svc.db.engine.connect() as push:
        push.begin()
        push.execute(sa.select(s.blobs.c.digest).where(s.blobs.c.digest == digest).with_for_update(read=True))

        def collect() -> None:
            try:
                svc.collector.run()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        collector = threading.Thread(target=collect)
        collector.start()
        assert pacer.gave_way.wait(120), "the batch never gave up waiting for the push's lock"
        push.commit()  # the push ends; the candidate taken alone gets its lock now
    collector.join(120)
    assert not collector.is_alive() and not errors, errors
    with svc.db.read() as conn:
        left = set(conn.execute(sa.select(s.blobs.c.digest)).scalars())
    assert left == set(), "garbage outlived the collection"
    assert any(obs.lock_timeout for obs in pacer.seen)
