"""`dockyard worker`: the background duties without HTTP, beside a `serve` that has them turned off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import wait_until
from tests.e2e.conftest import DOCKYARD, Server, running_server
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e


def duty_runs(log: Path) -> list[str]:
    return [
        e["duty"]
        for e in (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
        if e.get("event") == "duty started"
    ]


def vulndb_update(server: Server) -> dict[str, object]:
    r = httpx.get(f"{server.url}/api/v1/vulndb", auth=(server.username, server.password), timeout=TIMEOUT)
    r.raise_for_status()
    return dict(r.json()["update"])


def test_a_worker_runs_the_duties_that_a_serve_with_background_duties_off_leaves(tmp_path: Path) -> None:
    env = {"DOCKYARD_BACKGROUND_DUTIES": "false", "DOCKYARD_LOG_LEVEL": "debug", "DOCKYARD_GC_INTERVAL_SECONDS": "1"}
    with running_server(tmp_path / "data", "sqlite", extra_env=env) as server:
        r = httpx.post(f"{server.url}/api/v1/vulndb/update", auth=(server.username, server.password), timeout=TIMEOUT)
        assert r.status_code == 202, r.text
        assert vulndb_update(server)["state"] == "pending"

        worker_env = {**os.environ, "DOCKYARD_VULNDB_SOURCES": "[]", **env, "DOCKYARD_DATA_DIR": str(tmp_path / "data")}
        worker_env.pop("DOCKYARD_DATABASE_URL", None)  # the server's SQLite database in its data folder
        log = tmp_path / "worker.log"
        with open(log, "wb") as out:
            worker = subprocess.Popen([str(DOCKYARD), "worker"], env=worker_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            # The worker takes the request up (the server never would: it runs no duty).
            wait_until("the worker to run the requested update", lambda: vulndb_update(server)["state"] == "idle")
            update = vulndb_update(server)
            assert update["finished_at"] is not None and update["error"] is None, update
            wait_until("the worker's collector to run", lambda: "gc" in duty_runs(log))
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, log.read_text()
        assert {"vulndb", "gc"} <= set(duty_runs(log))
        assert duty_runs(server.log) == []
        assert '"worker stopping"' in log.read_text()


def test_a_worker_that_cannot_reach_its_database_says_so_and_exits(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DOCKYARD_DATA_DIR": str(tmp_path),
        "DOCKYARD_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:1/x",
    }
    done = subprocess.run([str(DOCKYARD), "worker"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert '"startup failed"' in done.stderr and "Traceback" not in done.stderr
