"""What lets the background duties run on replicas: a settable lease, a scrub that keeps its lease while
it paces itself, a loop that stops a long run at its next step, and serving without the duties."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.testclient import TestClient

from dockyard.api import app as app_module
from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.maintenance import Duty, Maintenance
from dockyard.wiring import Services, maintenance
from tests.lifecycle.conftest import image


def test_duty_lease_seconds_sets_every_duty_lease(svc: Services) -> None:
    seen: list[float] = []

    def record() -> None:
        seen.extend(h.ttl for h in leases._current.get() if isinstance(h, leases.Lease))

    svc.settings = svc.settings.model_copy(update={"duty_lease_seconds": 7.0})
    loop = maintenance(svc)
    assert loop.lease_seconds == 7.0
    Maintenance(svc.db, [Duty("gc", 0.001, record)], lease_seconds=7.0).run_due()
    Maintenance(svc.db, [Duty("retention", 0.001, record)]).run_due()  # unset: ten minutes
    assert seen == [7.0, leases.DEFAULT_TTL]
    assert leases.ttl_for(3600, None) == 7200  # or two intervals, when longer


def test_a_paced_scrub_keeps_its_lease_through_a_sleep_longer_than_the_lease(svc: Services) -> None:
    image(svc, "team/app", [b"x" * 300_000], "v1")
    lease = leases.Lease(svc.db, "scrub", "replica-a", ttl=2.0)
    assert lease.acquire()
    taken: list[bool] = []
    done = threading.Event()

    def rival() -> None:  # another replica trying for the scrub while this one sleeps off its lead
        while not done.is_set():
            taken.append(leases.acquire(svc.db, "scrub", "replica-b", ttl=2.0))
            time.sleep(0.2)

    competitor = threading.Thread(target=rival)
    competitor.start()
    try:
        with leases.running(lease):
            # 100 kB/s: the layer alone is three seconds of sleep, longer than the two-second lease.
            report = svc.scrubber.run(rate_bytes_per_second=100_000)
    finally:
        done.set()
        competitor.join()
    assert report.blobs >= 2 and report.seconds >= 3
    assert taken and not any(taken)
    assert leases.current_holder(svc.db, "scrub") == "replica-a"


def test_stopping_the_loop_ends_a_long_run_at_its_next_step_and_frees_the_lease(svc: Services) -> None:
    started, steps = threading.Event(), [0]

    def endless() -> None:
        started.set()
        while True:  # a run that only ends when its heartbeat says so
            leases.heartbeat()
            steps[0] += 1
            time.sleep(0.01)

    loop = Maintenance(svc.db, [Duty("scrub", 0.01, endless)], tick=0.01)
    loop.start()
    assert started.wait(30)
    loop.stop()
    assert loop._thread is not None and not loop._thread.is_alive()
    assert leases.current_holder(svc.db, "scrub") is None  # released: another replica may go on at once
    assert steps[0] > 0


@pytest.mark.parametrize("background", [True, False])
def test_serve_runs_the_duties_unless_background_duties_is_off(
    svc: Services, background: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Maintenance] = []

    def counted(services: Services) -> Maintenance:
        built.append(Maintenance(services.db, []))
        return built[-1]

    monkeypatch.setattr(app_module, "maintenance", counted)
    svc.settings = svc.settings.model_copy(update={"background_duties": background})
    with TestClient(app_module.create_app(svc)) as client:
        assert client.get("/healthz").status_code == 200
    assert len(built) == (1 if background else 0)
