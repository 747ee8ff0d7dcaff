"""The durable work queue (services/queue), on SQLite and PostgreSQL: claims by conditional update,
renewed by heartbeats, retries and backoff, and an item whose holder died back in the queue. Stored
timestamps stand in for time passing where a test is about expiry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.lifecycle import leases
from dockyard.services.queue import AVAILABLE, CLAIMED, FAILED, ClaimLost, WorkQueue

WAIT = 120


def _put(db: Database, queue: WorkQueue, n: int) -> None:
    with db.write() as conn:
        for i in range(n):
            queue.put(conn, {"n": i})


def _expire(db: Database, item_id: int, at: float) -> None:
    """The claim's holder stopped renewing it (its process died): its claim runs out at `at`."""
    with db.write() as conn:
        conn.execute(sa.update(s.queue_items).where(s.queue_items.c.id == item_id).values(processing_expires=at))


def test_put_claim_complete(database: Database) -> None:
    q = WorkQueue(database, "jobs")
    _put(database, q, 2)
    first = q.claim(holder="worker-1")
    assert first is not None and first.item.body == {"n": 0} and first.item.attempts == 1
    (row,) = q.items(CLAIMED)
    assert row["claimed_by"] == "worker-1" and row["processing_expires"] > now() + 500
    assert q.pending() == 1  # the claimed one is not claimable
    first.complete()
    second = q.claim()
    assert second is not None and second.item.body == {"n": 1}
    with database.write() as conn:
        second.complete(conn)  # in the caller's transaction, with whatever it stores
    assert q.claim() is None and q.items() == []
    assert WorkQueue(database, "other").claim() is None  # queues are separate


def test_an_item_put_in_a_rolled_back_transaction_never_exists(database: Database) -> None:
    q = WorkQueue(database, "jobs")
    with pytest.raises(RuntimeError), database.write() as conn:
        q.put(conn, {"n": 1})
        raise RuntimeError("the change failed")
    assert q.items() == [] and q.claim() is None


def test_two_threads_never_claim_the_same_item(database: Database) -> None:
    q = WorkQueue(database, "jobs")
    _put(database, q, 40)
    taken: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait(WAIT)
        while (claim := q.claim()) is not None:
            with lock:
                taken.append(claim.item.body["n"])
            claim.complete()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(taken) == list(range(40))  # each once: none lost, none twice
    assert q.items() == []


_CLAIMER = """
import json, sys
from dockyard.db.engine import Database
from dockyard.services.queue import WorkQueue
db = Database(sys.argv[1])
q = WorkQueue(db, "jobs")
got = []
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
while (claim := q.claim()) is not None:
    got.append(claim.item.body["n"])
    claim.complete()
print(json.dumps(got))
"""


def test_two_processes_never_claim_the_same_item(database: Database) -> None:
    q = WorkQueue(database, "jobs")
    _put(database, q, 60)
    url = database.engine.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for p in procs:  # both connected before either starts: they claim at the same time
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate(timeout=WAIT)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(results[0] + results[1]) == list(range(60))


def test_a_crashed_workers_claim_returns_to_the_queue_and_another_takes_it(database: Database) -> None:
    q = WorkQueue(database, "jobs", processing_seconds=600)
    _put(database, q, 1)
    crashed = q.claim(holder="crashed")
    assert crashed is not None
    assert q.claim(holder="other") is None  # a live claim is left alone
    _expire(database, crashed.item.id, now() - 1)  # no heartbeat came: its process is gone
    assert q.pending() == 1
    other = q.claim(holder="other")
    assert other is not None and other.item.id == crashed.item.id and other.item.attempts == 2
    assert other.item.retries_remaining == 1  # the crash spent a retry
    # The first holder, if it was only slow, finds out and stops: its heartbeat and completion fail.
    crashed.renew_every = 0.0
    with pytest.raises(ClaimLost):
        crashed.heartbeat()
    with pytest.raises(ClaimLost), database.write() as conn:
        crashed.complete(conn)
    other.complete()
    assert q.items() == []


def test_the_heartbeat_keeps_the_claim(database: Database) -> None:
    q = WorkQueue(database, "jobs", processing_seconds=600)
    _put(database, q, 1)
    claim = q.claim()
    assert claim is not None
    _expire(database, claim.item.id, now() + 0.3)  # about to run out
    claim._renewed = -1e9  # a quarter of its time has passed
    with leases.running(claim):
        leases.heartbeat()  # what long work calls between its steps
    time.sleep(0.5)  # the old expiry has passed
    assert q.claim() is None  # renewed: nobody else takes it
    (row,) = q.items(CLAIMED)
    assert row["processing_expires"] > now() + 500


def test_retries_run_out_and_the_item_ends_failed(database: Database) -> None:
    q = WorkQueue(database, "jobs", retries=2)
    _put(database, q, 1)
    first = q.claim()
    assert first is not None and first.fail("boom") is True  # will be retried
    (row,) = q.items(AVAILABLE)
    assert row["retries_remaining"] == 1 and row["error"] == "boom"
    second = q.claim()
    assert second is not None and second.item.retries_remaining == 0 and second.fail("boom again") is False
    assert q.claim() is None and q.pending() == 0
    (row,) = q.items(FAILED)
    assert row["error"] == "boom again" and row["attempts"] == 2


def test_a_holder_that_dies_on_the_last_retry_is_reaped(database: Database) -> None:
    q = WorkQueue(database, "jobs", retries=1)
    _put(database, q, 1)
    claim = q.claim()
    assert claim is not None
    assert q.reap() == []  # still live
    _expire(database, claim.item.id, now() - 1)
    assert q.claim() is None  # no retry left to claim it with
    (dead,) = q.reap()
    assert dead.id == claim.item.id and dead.body == {"n": 0} and dead.attempts == 1
    assert [r["state"] for r in q.items()] == [FAILED] and q.reap() == []


def test_a_failed_attempt_waits_for_its_backoff(database: Database) -> None:
    q = WorkQueue(database, "jobs", retries=5, backoff=30.0, max_backoff=100.0)
    assert [q.backoff_for(n) for n in (1, 2, 3, 4)] == [30.0, 60.0, 100.0, 100.0]
    _put(database, q, 1)
    claim = q.claim()
    assert claim is not None and claim.fail("unreachable")
    assert q.claim() is None and q.pending() == 0  # not before its time
    (row,) = q.items(AVAILABLE)
    assert now() + 25 < row["available_after"] < now() + 31


def test_release_gives_the_item_back_without_spending_a_retry(database: Database) -> None:
    q = WorkQueue(database, "jobs", retries=3)
    _put(database, q, 1)
    claim = q.claim()
    assert claim is not None
    claim.release()
    again = q.claim()
    assert again is not None and again.item.attempts == 1 and again.item.retries_remaining == 2


def test_put_with_a_key_is_idempotent(database: Database) -> None:
    q = WorkQueue(database, "jobs", retries=1)
    with database.write() as conn:
        assert q.put(conn, {"v": 1}, key="image-a")
        assert q.put(conn, {"v": 2}, key="image-a")  # the waiting item takes the new body
        assert q.put(conn, {"v": 1}, key="image-b")
    assert Counter(r["key"] for r in q.items()) == {"image-a": 1, "image-b": 1}
    claim = q.claim()
    assert claim is not None and claim.item.key == "image-a" and claim.item.body == {"v": 2}  # kept its place
    with database.write() as conn:
        assert not q.put(conn, {"v": 3}, key="image-a")  # being worked on: its holder does it
    assert claim.fail("boom") is False  # out of retries: failed
    with database.write() as conn:
        assert q.put(conn, {"v": 4}, key="image-a")  # a failed item is queued afresh
    (row,) = [r for r in q.items() if r["key"] == "image-a"]
    assert row["state"] == AVAILABLE and json.loads(row["body"]) == {"v": 4} and row["retries_remaining"] == 1


def test_work_completes_retries_and_survives_a_bad_item(database: Database) -> None:
    q = WorkQueue(database, "jobs", retries=2)
    _put(database, q, 3)
    failures: list[tuple[int, bool]] = []

    def handle(claim: object) -> None:
        if claim.item.body["n"] == 1:  # type: ignore[attr-defined]
            raise ValueError("bad item")

    def failed(conn: sa.Connection, claim: object, exc: Exception, retry: bool) -> None:
        failures.append((claim.item.body["n"], retry))  # type: ignore[attr-defined]

    done = q.work(handle, limit=10, on_failure=failed)
    assert (done.completed, done.retried, done.failed) == (2, 1, 0)  # each item once per pass
    assert failures == [(1, True)]
    done = q.work(handle, limit=10, on_failure=failed)
    assert (done.completed, done.retried, done.failed) == (0, 0, 1) and failures[-1] == (1, False)


def test_a_holder_whose_claim_was_taken_over_cannot_fail_or_release_it(database: Database) -> None:
    q = WorkQueue(database, "jobs")
    _put(database, q, 1)
    slow = q.claim(holder="slow")
    assert slow is not None
    _expire(database, slow.item.id, now() - 1)
    other = q.claim(holder="other")
    assert other is not None
    with pytest.raises(ClaimLost):
        slow.fail("late failure")
    slow.release()  # does nothing to the other holder's claim
    (row,) = q.items()
    assert row["state"] == CLAIMED and row["claim_token"] == other.token and row["error"] is None
