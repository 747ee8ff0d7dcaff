"""Leases: one holder at a time, taken over when the holder stops renewing."""

from __future__ import annotations

import threading
import time

from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.maintenance import Duty, Maintenance
from dockyard.wiring import Services


def test_one_holder_at_a_time_and_takeover_after_expiry(svc: Services) -> None:
    assert leases.acquire(svc.db, "gc", "a", ttl=0.5)
    assert not leases.acquire(svc.db, "gc", "b", ttl=0.5)
    assert leases.acquire(svc.db, "gc", "a", ttl=0.5)  # the holder renews
    time.sleep(0.6)
    assert leases.acquire(svc.db, "gc", "b", ttl=0.5)  # expired: another takes over
    leases.release(svc.db, "gc", "b")
    assert leases.acquire(svc.db, "gc", "a", ttl=0.5)


def test_maintenance_loops_on_two_replicas_never_run_a_duty_at_once(svc: Services) -> None:
    running, overlaps, runs = [0], [0], [0]
    lock = threading.Lock()

    def duty() -> None:
        with lock:
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
            runs[0] += 1
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    replicas = [Maintenance(svc.db, [Duty("gc", 0.01, duty)], tick=0.01) for _ in range(3)]
    for m in replicas:
        m.start()
    time.sleep(1.5)
    for m in replicas:
        m.stop()
    assert runs[0] >= 5 and overlaps[0] == 1
