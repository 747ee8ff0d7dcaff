"""Leases: one holder at a time, taken over when the holder stops renewing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dockyard.api import app as app_module
from dockyard.cli import app as cli_app
from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.maintenance import VULNDB, Duty, Maintenance
from dockyard.wiring import Services, build_services, maintenance, prepare
from tests.api.conftest import ADMIN, ADMIN_PASSWORD, Registry, make_settings
from tests.lifecycle.conftest import image


def test_one_holder_at_a_time_and_takeover_after_expiry(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    # A long TTL and a clock moved past it, not a short TTL and a sleep: on a slow machine a 0.5 s
    # lease could expire between two of these calls.
    assert leases.acquire(svc.db, "gc", "a", ttl=60)
    assert not leases.acquire(svc.db, "gc", "b", ttl=60)
    assert leases.acquire(svc.db, "gc", "a", ttl=60)  # the holder renews
    real_now = leases.now
    monkeypatch.setattr(leases, "now", lambda: real_now() + 61)
    assert leases.acquire(svc.db, "gc", "b", ttl=60)  # expired: another takes over
    leases.release(svc.db, "gc", "b")
    assert leases.acquire(svc.db, "gc", "a", ttl=60)


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
    deadline = time.monotonic() + 120  # until the duty has run 20 times, not for a fixed while
    while runs[0] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    for m in replicas:
        m.stop()
    assert runs[0] >= 20 and overlaps[0] == 1


# --- renewal while work runs, and stopping when the lease is lost -----------------------------------
def _outlive_ttl(svc: Services, name: str) -> None:
    """As if the run had taken longer than its lease's TTL: without renewal, anyone could take it now."""
    with svc.db.write() as conn:
        conn.execute(sa.update(s.leases).where(s.leases.c.name == name).values(expires_at=now() - 1))


def _take_over(svc: Services, name: str, holder: str = "other-replica") -> None:
    with svc.db.write() as conn:
        conn.execute(sa.update(s.leases).where(s.leases.c.name == name).values(holder=holder, expires_at=now() + 600))


def test_a_long_run_renews_its_lease_between_steps(svc: Services) -> None:
    steps: list[int] = []

    def long_work() -> None:
        for step in range(3):
            _outlive_ttl(svc, "gc")  # this step took longer than the whole TTL …
            leases.heartbeat()  # … the heartbeat between steps renews the lease …
            if leases.acquire(svc.db, "gc", "other-replica", ttl=60):  # … so no other process takes over
                return
            steps.append(step)

    Maintenance(svc.db, [Duty("gc", 0.001, long_work)], renew_every=0).run_due()
    assert steps == [0, 1, 2]


def test_the_collector_stops_when_its_lease_is_lost(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    digests = [image(svc, "team/a", [f"layer {i}".encode()], None) for i in range(3)]  # untagged: garbage
    collect_batch = svc.collector._batch
    svc.collector.batch_size = 1  # one candidate per transaction: the heartbeat runs between transactions

    def then_lose_the_lease(items: Any, report: Any) -> int:
        collected = len(report.manifests)
        taken = collect_batch(items, report)
        if len(report.manifests) > collected:  # the first manifest went
            _take_over(svc, "gc")  # e.g. this process stalled past the TTL and another replica took over
        return taken

    monkeypatch.setattr(svc.collector, "_batch", then_lose_the_lease)
    Maintenance(svc.db, [Duty("gc", 0.001, svc.collector.run)], renew_every=0).run_due()
    with svc.db.read() as conn:
        left = set(conn.execute(sa.select(s.manifests.c.digest)).scalars())
    assert left == set(digests[1:]), "the run went on after another process had taken its lease"
    assert leases.current_holder(svc.db, "gc") == "other-replica"  # and ending it left their lease alone


# --- every entry point goes through the same lease ---------------------------------------------------
@pytest.fixture
def api(tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The HTTP API with no maintenance loop of its own: the tests play the other replicas."""
    settings = make_settings(tmp_path, database).model_copy(
        update={"gc_grace_seconds": 0.0, "tag_history_keep_days": 0.0}
    )
    services = build_services(settings, db=database)
    prepare(services)
    monkeypatch.setattr(app_module, "maintenance", lambda svc: Maintenance(svc.db, []))
    with TestClient(app_module.create_app(services), base_url="http://registry.test") as client:
        yield Registry(client, services)


def test_gc_from_the_api_and_the_cli_refuses_while_another_process_collects(
    api: Registry, tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = api.services
    garbage = image(svc, "team/a", [b"doomed"], None)
    assert leases.acquire(svc.db, "gc", "server-2:4711", ttl=600)  # the background collector is running

    r = api.http.post("/api/v1/system/gc", params={"dry_run": False}, headers=ADMIN)
    assert r.status_code == 409 and "server-2:4711" in r.text
    monkeypatch.setenv("DOCKYARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DOCKYARD_DATABASE_URL", database.url)
    monkeypatch.setenv("DOCKYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
    result = CliRunner().invoke(cli_app, ["gc"])
    assert result.exit_code == 1 and "server-2:4711" in result.output
    assert svc.manifests.get("team/a", garbage)  # neither collected anything

    dry = api.http.post("/api/v1/system/gc", params={"dry_run": True}, headers=ADMIN)  # reads only: no lease
    assert dry.status_code == 200 and dry.json()["removed"]["manifests"] == [f"team/a@{garbage}"]
    assert CliRunner().invoke(cli_app, ["gc", "--dry-run"]).exit_code == 0

    leases.release(svc.db, "gc", "server-2:4711")
    r = api.http.post("/api/v1/system/gc", params={"dry_run": False}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["manifests"] == 1
    assert leases.current_holder(svc.db, "gc") is None  # released after the run


def test_vulndb_update_from_the_api_is_run_by_the_background_duty(
    api: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = api.services
    updates: list[str] = []
    monkeypatch.setattr(svc.scans, "update_vulndb", lambda sources: updates.append(threading.current_thread().name))

    r = api.http.post("/api/v1/vulndb/update", headers=ADMIN)
    assert r.status_code == 202 and r.headers["location"] == "/api/v1/vulndb"
    assert r.json()["update"]["state"] == "pending" and r.json()["update"]["requested_by"] == "admin"
    assert updates == []  # no download in the request's thread

    loop = Maintenance(svc.db, [d for d in maintenance(svc).duties if d.name == VULNDB])
    assert leases.acquire(svc.db, VULNDB, "server-2:4711", ttl=600)  # another replica is updating
    loop.run_due()
    assert updates == [] and api.http.get("/api/v1/vulndb", headers=ADMIN).json()["update"]["state"] == "pending"

    leases.release(svc.db, VULNDB, "server-2:4711")
    loop.run_due()  # the replica that gets the lease runs the request, once
    loop.run_due()
    assert updates == [threading.current_thread().name]
    status = api.http.get("/api/v1/vulndb", headers=ADMIN).json()["update"]
    assert status["state"] == "idle" and status["finished_at"] >= status["started_at"] >= status["requested_at"]
    assert status["error"] is None
