"""How hard the collector may work, from what its own transactions measure.

The collector is background work: it should take what pushes and pulls leave and no more. A fixed
duty fraction is wrong both ways — too slow on a quiet registry, too greedy under load — so the
pacer watches two things the collector measures anyway, each against the best it has seen this run:

- **wait**: how long the collector waited for its write transaction to start (SQLite: the write lock
  another writer held; PostgreSQL: the first round trip, slow when the server is short of CPU), and
  whether a lock wait timed out;
- **cost**: how long one candidate took inside the transaction (a collector sharing the CPU with
  requests, or waiting on their row locks, takes longer for the same work).

Either one above its baseline means someone else needs the database or the CPU now: the duty (the
fraction of time the collector may spend in transactions) is halved, down to `floor`. Otherwise it
grows by `step`, up to `ceiling`: additive increase, multiplicative decrease, as TCP shares a link.
The clock and the sleep are injected, so the behaviour is tested without timing anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """One collector transaction: `wait` until it started, `busy` inside it, over `items` candidates."""

    kind: str  # what the transaction did ("manifest", "link", "blob", "sweep"): costs differ by kind
    wait: float
    busy: float
    items: int
    lock_timeout: bool = False  # a lock wait was given up (PostgreSQL lock_timeout)


class Pacer:
    """Decides the collector's duty from its observations, and sleeps it off between transactions.

    `fixed` turns the measurement off: the duty stays at that fraction (1 never sleeps).
    """

    def __init__(
        self,
        ceiling: float = 1.0,
        floor: float = 0.05,
        step: float = 0.05,
        wait_margin: float = 0.001,
        cost_tolerance: float = 1.0,
        fixed: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fixed is not None:
            ceiling = floor = fixed
        if not 0 < floor <= ceiling <= 1:
            raise ValueError(f"pace bounds must satisfy 0 < floor <= ceiling <= 1, not {floor}, {ceiling}")
        self.ceiling, self.floor, self.step = ceiling, floor, step
        # A wait counts as contention above the best wait plus `wait_margin` (SQLite's busy handler
        # sleeps 1 ms first, so one lost race costs at least that); a cost above the best cost of its
        # kind times (1 + `cost_tolerance`).
        self.wait_margin, self.cost_tolerance = wait_margin, cost_tolerance
        self.clock, self.sleep = clock, sleep
        self.duty = floor  # start gently: nothing is known yet
        self.best_wait: float | None = None
        self.best_cost: dict[str, float] = {}
        self.contended = 0  # observations that found contention, for the report and the tests
        self.slept = 0.0
        self.owed = 0.0  # sleep not yet taken

    @property
    def fixed(self) -> bool:
        return self.floor == self.ceiling

    def contention(self, obs: Observation) -> bool:
        """Whether this observation shows someone else needing the database; updates the baselines."""
        if obs.lock_timeout:
            return True
        found = False
        if self.best_wait is not None and obs.wait > self.best_wait + self.wait_margin:
            found = True
        self.best_wait = obs.wait if self.best_wait is None else min(self.best_wait, obs.wait)
        if obs.items > 0:
            cost = obs.busy / obs.items
            best = self.best_cost.get(obs.kind)
            if best is not None and cost > best * (1 + self.cost_tolerance):
                found = True
            self.best_cost[obs.kind] = cost if best is None else min(best, cost)
        return found

    def observe(self, obs: Observation, pause: bool = True) -> None:
        """Adjust the duty to one transaction, then sleep so that the collector is busy at most `duty`
        of the time: a transaction of `t` seconds (waiting included) is followed by t * (1/duty - 1).
        With `pause` false the sleep is owed and taken at the next pause (a mark is swept at once)."""
        if not self.fixed:
            if self.contention(obs):
                self.contended += 1
                self.duty = max(self.floor, self.duty / 2)
            else:
                self.duty = min(self.ceiling, self.duty + self.step)
        self.owed += (obs.wait + obs.busy) * (1 / self.duty - 1)
        if pause and self.owed > 0:
            self.slept += self.owed
            self.sleep(self.owed)
            self.owed = 0.0
