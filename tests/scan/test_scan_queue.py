"""The scan queue's claims: a scan whose process died does not keep its image in `scanning` for good
(under block_unscanned such an image could never be pulled again). Scans are items of the `scan` work
queue (services/queue); stored timestamps stand in for time passing: nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.queue import CLAIMED
from dockyard.services.scanning.scanner import MAX_ATTEMPTS
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings
from tests.lifecycle.conftest import image
from tests.scan.images import layer_tar
from tests.scan.test_inventory import DEBIAN_11


@pytest.fixture
def svc(tmp_path: Path, database: Database) -> Iterator[Services]:
    services = build_services(make_settings(tmp_path, database), db=database)
    prepare(services)
    yield services


def _row(svc: Services, digest: str) -> Any:
    with svc.db.read() as conn:
        return conn.execute(sa.select(s.image_scans).where(s.image_scans.c.digest == digest)).one()


def _item(svc: Services, digest: str) -> dict[str, Any] | None:
    found = [i for i in svc.scans.queue.items() if i["key"] == digest]
    return found[0] if found else None


def _claimed_by_a_scan_that(svc: Services, digest: str, expires: float, attempts: int = 1) -> None:
    """A scan in another process claimed the image's queue item (and its claim runs out at `expires`)."""
    with svc.db.write() as conn:
        conn.execute(
            sa.update(s.queue_items)
            .where(s.queue_items.c.key == digest)
            .values(
                state=CLAIMED,
                claim_token="other",
                attempts=attempts,
                retries_remaining=MAX_ATTEMPTS - attempts,
                processing_expires=expires,
            )
        )
        conn.execute(sa.update(s.image_scans).where(s.image_scans.c.digest == digest).values(status="scanning"))


def test_an_image_whose_scan_died_returns_to_the_queue_when_its_claim_expires(svc: Services) -> None:
    digest = image(svc, "team/app", [layer_tar({"etc/os-release": DEBIAN_11})], "1.0")
    _claimed_by_a_scan_that(svc, digest, expires=now() + 600)  # is still running (or died just now)
    assert svc.scans.run().scanned == 0 and svc.scans.pending() == 0
    assert _row(svc, digest).status == "scanning"  # a live claim is left alone

    _claimed_by_a_scan_that(svc, digest, expires=now() - 1)  # stopped renewing: its process is gone
    assert svc.scans.pending() == 1
    run = svc.scans.run()
    row = _row(svc, digest)
    assert run.scanned == 1 and row.status == "done" and row.distro == "debian-11"
    assert _item(svc, digest) is None  # the work is done: its item is gone with it


def test_a_claim_is_taken_with_an_expiry_for_the_length_of_the_scan(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = image(svc, "team/app", [layer_tar({"etc/os-release": DEBIAN_11})], "1.0")
    seen: list[Any] = []
    inventory = svc.scans.evaluation.layer_inventory

    def look(layer: str, out: Any) -> Any:
        seen.append((_row(svc, digest), _item(svc, digest)))
        return inventory(layer, out)

    monkeypatch.setattr(svc.scans.evaluation, "layer_inventory", look)
    started = now()
    svc.scans.run()
    ((during, item),) = seen
    assert during.status == "scanning" and item is not None and item["state"] == CLAIMED
    assert item["processing_expires"] > started + 60 and item["attempts"] == 1


def test_an_image_that_keeps_killing_its_scan_ends_failed(svc: Services) -> None:
    digest = image(svc, "team/app", [layer_tar({"etc/os-release": DEBIAN_11})], "1.0")
    _claimed_by_a_scan_that(svc, digest, expires=now() - 1, attempts=MAX_ATTEMPTS)
    run = svc.scans.run()
    row = _row(svc, digest)
    assert run.failed == 1 and row.status == "failed" and "stopped without a result" in row.error
    assert svc.scans.pending() == 0
