"""A durable work queue in the database (the model: Quay's data/queue.py), taken from by any number of
processes and threads at once.

- `put` adds an item (JSON body) in the caller's transaction, so work is queued exactly when the
  change that asks for it commits; with a `key` there is at most one live item per key.
- `claim` takes the oldest available item in one conditional UPDATE that gives it a fresh claim
  token, spends one retry and sets `processing_expires`. On PostgreSQL the candidate is selected
  `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass each other instead of queueing on one row; on
  SQLite the write transaction is `BEGIN IMMEDIATE`, which serialises claimers.
- While the work runs, the claim is renewed by `leases.heartbeat()` (the claim is a
  `leases.Renewable`, like a duty's lease); once its holder dies and `processing_expires` passes, the
  item is claimable again. A crash spends the retry it was claimed with.
- `Claim.complete` deletes the item (in the caller's transaction: a result and the end of its work
  commit together); `Claim.fail` makes it available again after a backoff, or `failed` once out of
  retries; `reap` ends items whose holder died with no retry left.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.lifecycle import leases

AVAILABLE, CLAIMED, FAILED = "available", "claimed", "failed"

_t = s.queue_items
_c = s.queue_items.c


class ClaimLost(leases.LeaseLost):
    """The item's claim ran out unrenewed and another holder took it: this holder must stop."""


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    queue: str
    key: str | None
    body: dict[str, Any]
    attempts: int  # including this one
    retries_remaining: int  # after this attempt


class Claim(leases.Renewable):
    """One holder's claim on one item: renewed by heartbeat(), ended by complete / fail / release."""

    def __init__(self, queue: WorkQueue, item: Item, token: str) -> None:
        self.queue, self.item, self.token = queue, item, token
        self.renew_every = queue.processing_seconds / 4
        self._renewed = 0.0
        self.done = False

    def _mine(self) -> Any:
        return sa.and_(_c.id == self.item.id, _c.claim_token == self.token, _c.state == CLAIMED)

    def _renew(self) -> bool:
        stmt = sa.update(_t).where(self._mine()).values(processing_expires=now() + self.queue.processing_seconds)
        with self.queue.db.write() as conn:
            return conn.execute(stmt).rowcount == 1

    def _lost(self) -> Exception:
        return ClaimLost(f"queue item {self.item.id} ({self.item.queue}) was taken by another holder")

    @contextmanager
    def _conn(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        if conn is not None:
            yield conn
        else:
            with self.queue.db.write() as own:
                yield own

    def complete(self, conn: sa.Connection | None = None) -> None:
        """Remove the item: its work is done. Raises ClaimLost (rolling back `conn`'s transaction,
        e.g. the result stored with it) when another holder has it now: that one's result counts."""
        with self._conn(conn) as c:
            if c.execute(sa.delete(_t).where(self._mine())).rowcount != 1:
                raise self._lost()
        self.done = True

    def fail(self, error: str, conn: sa.Connection | None = None) -> bool:
        """The attempt failed: the item waits for its backoff then is claimable again, or ends `failed`
        when this was its last retry. True: it will be retried."""
        retry = self.item.retries_remaining > 0
        values: dict[str, Any] = {"error": error[:2000], "claim_token": None, "processing_expires": None}
        if retry:
            values.update(state=AVAILABLE, available_after=now() + self.queue.backoff_for(self.item.attempts))
        else:
            values.update(state=FAILED)
        with self._conn(conn) as c:
            if c.execute(sa.update(_t).where(self._mine()).values(**values)).rowcount != 1:
                raise self._lost()  # another holder has it now: its outcome counts, not this one
        self.done = True
        return retry

    def release(self, conn: sa.Connection | None = None) -> None:
        """Give the item back untouched (this holder stops, not the item's fault): the retry is returned."""
        values = {
            "state": AVAILABLE,
            "claim_token": None,
            "processing_expires": None,
            "retries_remaining": _c.retries_remaining + 1,
            "attempts": _c.attempts - 1,
        }
        with self._conn(conn) as c:
            c.execute(sa.update(_t).where(self._mine()).values(**values))
        self.done = True


@dataclass
class Worked:
    """What one `WorkQueue.work` pass did."""

    completed: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0  # claims another holder took over (ours ran out unrenewed)
    ids: list[int] = field(default_factory=list)


class WorkQueue:
    def __init__(
        self,
        db: Database,
        name: str,
        processing_seconds: float = 600.0,
        retries: int = 3,
        backoff: float = 0.0,
        max_backoff: float = 3600.0,
    ) -> None:
        self.db, self.name = db, name
        self.processing_seconds = processing_seconds  # a claim's time, renewed by heartbeats
        self.retries = retries  # attempts an item gets (a crash counts as one)
        self.backoff, self.max_backoff = backoff, max_backoff  # seconds before retry n: backoff * 2**(n-1)

    def backoff_for(self, attempts: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1))

    def _claimable(self, t: float) -> Any:
        expired = sa.and_(_c.state == CLAIMED, _c.processing_expires < t)
        return sa.and_(
            _c.queue == self.name,
            _c.available_after <= t,
            _c.retries_remaining > 0,
            sa.or_(_c.state == AVAILABLE, expired),
        )

    def put(
        self,
        conn: sa.Connection,
        body: dict[str, Any],
        key: str | None = None,
        delay: float = 0.0,
        retries: int | None = None,
    ) -> bool:
        """Queue work in the caller's transaction. With a `key`: an item waiting under it takes the new
        body (keeping its place), a failed one is queued afresh, and one being worked on is left alone
        (False: its holder does the work)."""
        t = now()
        values = {
            "queue": self.name,
            "key": key,
            "body": json.dumps(body),
            "state": AVAILABLE,
            "available_after": t + delay,
            "retries_remaining": self.retries if retries is None else retries,
            "attempts": 0,
            "created_at": t,
        }
        ins = self.db.insert(_t).values(**values)
        if key is None:
            conn.execute(ins)
            return True
        live = sa.and_(_c.state == CLAIMED, _c.processing_expires >= t)
        stmt = ins.on_conflict_do_update(
            index_elements=["queue", "key"],
            set_={
                "body": ins.excluded.body,
                "available_after": sa.case(
                    (_c.state == AVAILABLE, _c.available_after), else_=ins.excluded.available_after
                ),
                "state": AVAILABLE,
                "retries_remaining": ins.excluded.retries_remaining,
                "attempts": 0,
                "error": None,
                "claim_token": None,
                "processing_expires": None,
            },
            where=sa.not_(live),
        ).returning(_c.id)
        return conn.execute(stmt).first() is not None

    def cancel(self, conn: sa.Connection, key: str) -> bool:
        """Drop the item under `key` in the caller's transaction (the work it stood for is moot); a
        holder working on it finds its claim lost when it completes."""
        return bool(conn.execute(sa.delete(_t).where(_c.queue == self.name, _c.key == key)).rowcount)

    def claim(self, holder: str | None = None, exclude: Iterable[int] = ()) -> Claim | None:
        """Take the oldest available item (or one whose holder died), or None when there is none."""
        t, token = now(), uuid.uuid4().hex
        candidate = sa.select(_c.id).where(self._claimable(t))
        skip = sorted(exclude)
        if skip:
            candidate = candidate.where(_c.id.not_in(skip))
        # SKIP LOCKED: concurrent claimers pass rows another is taking; SQLite renders no FOR UPDATE
        # (its write transactions are serialised by BEGIN IMMEDIATE).
        candidate = candidate.order_by(_c.available_after, _c.id).limit(1).with_for_update(skip_locked=True)
        stmt = (
            sa.update(_t)
            # `= (scalar subquery)`: evaluated once. `IN (subquery)` may be run again per row on
            # PostgreSQL, and with SKIP LOCKED each run finds the next row: one claim took them all.
            .where(_c.id == candidate.scalar_subquery(), self._claimable(t))  # still claimable: conditional
            .values(
                state=CLAIMED,
                claim_token=token,
                claimed_by=(holder or leases.holder_name(self.name))[-128:],
                processing_expires=t + self.processing_seconds,
                retries_remaining=_c.retries_remaining - 1,
                attempts=_c.attempts + 1,
            )
            .returning(_c.id, _c.key, _c.body, _c.attempts, _c.retries_remaining)
        )
        with self.db.write() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        item = Item(
            int(row.id), self.name, row.key, json.loads(row.body), int(row.attempts), int(row.retries_remaining)
        )
        claim = Claim(self, item, token)
        claim._renewed = time.monotonic()
        return claim

    def reap(self, error: str = "its holder stopped without a result") -> list[Item]:
        """End the items whose holder died on their last retry (`failed`), and return them so their
        owner can record it; the others come back by themselves when their claim runs out."""
        t = now()
        dead = sa.and_(_c.queue == self.name, _c.state == CLAIMED, _c.processing_expires < t, _c.retries_remaining <= 0)
        stmt = (
            sa.update(_t)
            .where(dead)
            .values(state=FAILED, claim_token=None, processing_expires=None, error=error)
            .returning(_c.id, _c.key, _c.body, _c.attempts, _c.retries_remaining)
        )
        with self.db.write() as conn:
            rows = conn.execute(stmt).all()
        return [Item(int(r.id), self.name, r.key, json.loads(r.body), int(r.attempts), 0) for r in rows]

    def pending(self) -> int:
        """Items claimable now."""
        with self.db.read() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(_t).where(self._claimable(now()))).scalar_one()
            )

    def items(self, state: str | None = None) -> list[dict[str, Any]]:
        """The queue's items as stored (for operators and tests)."""
        q = sa.select(_t).where(_c.queue == self.name).order_by(_c.id)
        if state is not None:
            q = q.where(_c.state == state)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def work(
        self,
        handle: Callable[[Claim], None],
        limit: int,
        on_failure: Callable[[sa.Connection, Claim, Exception, bool], None] | None = None,
        holder: str | None = None,
    ) -> Worked:
        """Claim and handle up to `limit` items, each at most once in this pass, oldest first.

        `handle` runs with the claim renewed by `leases.heartbeat()`; the item is completed after it
        unless `handle` completed it in its own transaction (`claim.complete(conn)`). An exception fails
        the attempt; `on_failure` records it in the same transaction. A lost claim stops that item
        only; a lost lease (the duty this runs under) gives the item back and stops the pass.
        """
        out = Worked()
        for _ in range(limit):
            claim = self.claim(holder, exclude=out.ids)
            if claim is None:
                break
            out.ids.append(claim.item.id)
            try:
                with leases.running(claim):
                    handle(claim)
                    if not claim.done:
                        claim.complete()
            except ClaimLost:
                out.lost += 1
                continue
            except leases.LeaseLost:
                claim.release()
                raise
            except Exception as exc:  # one bad item must not stop the queue
                try:
                    with self.db.write() as conn:
                        retry = claim.fail(f"{type(exc).__name__}: {exc}", conn)
                        if on_failure is not None:
                            on_failure(conn, claim, exc, retry)
                except ClaimLost:
                    out.lost += 1
                    continue
                if retry:
                    out.retried += 1
                else:
                    out.failed += 1
                continue
            out.completed += 1
        return out
