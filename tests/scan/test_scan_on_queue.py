"""Scanning runs on the work queue: a push puts an item on the `scan` queue in its transaction, any
number of replicas take items from it, and the external scanner is called through the injected
outbound HTTP client (here on an httpx.MockTransport)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from dockyard import __version__
from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.services.scanning.queueing import QUEUE
from dockyard.wiring import Services, build_services, http_client, prepare
from tests.api.conftest import make_settings
from tests.lifecycle.conftest import image
from tests.scan.images import layer_tar
from tests.scan.test_inventory import DEBIAN_11

WAIT = 120


@pytest.fixture
def svc(tmp_path: Path, database: Database) -> Iterator[Services]:
    services = build_services(make_settings(tmp_path, database), db=database)
    prepare(services)
    yield services
    services.close()


def _debian(svc: Services, repo: str, n: int = 0) -> str:
    return image(svc, repo, [layer_tar({"etc/os-release": DEBIAN_11, f"app/{n}": b"x"})], "1.0")


def test_a_push_queues_an_item_that_the_scan_run_takes_and_completes(svc: Services) -> None:
    digest = _debian(svc, "team/app")
    (item,) = svc.scans.queue.items()
    assert item["queue"] == QUEUE and item["key"] == digest and item["state"] == "available"
    assert json.loads(item["body"]) == {"repository": "team/app", "digest": digest, "requested": False}
    # The same image pushed to another repository: content-addressed, one scan serves both.
    with svc.db.read() as conn:
        body = conn.execute(sa.select(s.manifests.c.content).where(s.manifests.c.digest == digest)).scalar_one()
    for blob in json.loads(body)["layers"] + [json.loads(body)["config"]]:
        svc.blobs.mount("team/other", blob["digest"], "team/app")
    svc.manifests.put("team/other", "1.0", bytes(body), mt.OCI_MANIFEST)
    assert len(svc.scans.queue.items()) == 1
    run = svc.scans.run()
    assert run.scanned == 1
    status = svc.scans.status(digest)
    assert status is not None and status["status"] == "done" and status["distro"] == "debian-11"
    assert svc.scans.queue.items() == []  # completed with the result


def test_a_requested_scan_of_a_scanned_image_is_queued_again(svc: Services) -> None:
    digest = _debian(svc, "team/app")
    svc.scans.run()
    assert svc.scans.queue.items() == []
    svc.scans.request("team/app", digest)
    svc.scans.request("team/app", digest)  # idempotent: one item
    (item,) = svc.scans.queue.items()
    assert json.loads(item["body"])["requested"] is True
    assert svc.scans.status(digest)["status"] == "queued"  # type: ignore[index]
    assert svc.scans.run().scanned == 1


def test_two_replicas_take_scans_from_one_queue_each_image_once(tmp_path: Path, database: Database) -> None:
    settings = make_settings(tmp_path, database)
    replicas = [build_services(settings, db=database) for _ in range(2)]
    prepare(replicas[0])
    digests = [_debian(replicas[0], f"team/app{n}", n) for n in range(6)]
    runs = []
    start = threading.Barrier(2)

    def scan(replica: Services) -> None:
        start.wait(WAIT)
        runs.append(replica.scans.run(limit=50))

    threads = [threading.Thread(target=scan, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sum(r.scanned for r in runs) == 6 and sum(r.failed for r in runs) == 0
    with database.read() as conn:
        audited = conn.execute(sa.select(s.audit_events.c.digest).where(s.audit_events.c.action == "scan")).all()
    assert sorted(d for (d,) in audited) == sorted(digests)  # each image scanned once
    for r in replicas:
        r.close()


def test_the_external_scanner_is_called_through_the_injected_http_client(tmp_path: Path, database: Database) -> None:
    seen: list[httpx.Request] = []

    def adapter(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST" and request.url.path == "/api/v1/scan":
            return httpx.Response(202, json={"id": "job-1"})
        if request.url.path == "/api/v1/scan/job-1/report":
            report = {"vulnerabilities": [{"id": "CVE-2023-0001", "package": "openssl", "version": "1.1.1n",
                                           "severity": "High", "fix_version": "1.1.1t"}]}  # fmt: skip
            return httpx.Response(200, json=report)
        return httpx.Response(404)

    settings = make_settings(tmp_path, database).model_copy(
        update={"external_scanner_url": "http://adapter.test", "external_scanner_authorization": "Bearer adapter-key"}
    )
    svc = build_services(settings, db=database, http=http_client(transport=httpx.MockTransport(adapter)))
    prepare(svc)
    digest = _debian(svc, "team/app")
    assert svc.scans.run().scanned == 1
    status = svc.scans.status(digest)
    assert status is not None and status["status"] == "done" and status["scanner"] == "external:http://adapter.test"
    assert status["summary"]["HIGH"] == 1
    scan = seen[0]
    assert json.loads(scan.content)["artifact"]["digest"] == digest
    assert all(r.headers["user-agent"] == f"dockyard/{__version__}" for r in seen)
    assert all(r.headers["authorization"] == "Bearer adapter-key" for r in seen)
    svc.close()
