"""Automatic quarantine, on SQLite and PostgreSQL: a project's rule quarantines an image as soon as a
scan, or a re-evaluation after a vulnerability-database update, finds a finding at or above its
severity (less allowlists), with the advisory as the reason, and records the event."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.services.audit import AuditFilter
from dockyard.services.errors import Denied
from dockyard.wiring import Services
from tests.api.conftest import ADMIN
from tests.lifecycle.conftest import image
from tests.scan.conftest import shared_vulndb
from tests.scan.images import layer_tar
from tests.scan.test_inventory import DEBIAN_11
from tests.scan.test_matching import BULLSEYE_STATUS

BASE = layer_tar({"etc/os-release": DEBIAN_11, "var/lib/dpkg/status": BULLSEYE_STATUS})


@pytest.fixture(scope="module")
def node_layer(node_modules: Path) -> bytes:
    return layer_tar({"srv/app/node_modules": node_modules})


def _project(svc: Services, name: str, severity: str | None) -> None:
    if not any(p.name == name for p in svc.projects.list_projects()):
        svc.projects.create(name)
    svc.quarantines.set_auto_severity(name, severity)


def _pull(svc: Services, repo: str, ref: str) -> None:
    m = svc.manifests.get(repo, ref)
    svc.gates.check_pull(repo, m.digest, m.media_type, m.content)


def test_a_scan_quarantines_at_once_with_the_advisory_as_reason(services: Services, node_layer: bytes) -> None:
    svc = services
    _project(svc, "team", "high")
    _project(svc, "calm", None)  # the same image in a project without the rule
    web = image(svc, "team/web", [BASE, node_layer], "latest")
    image(svc, "calm/web", [BASE, node_layer], "latest")
    assert svc.quarantines.list() == []
    _pull(svc, "team/web", "latest")  # not scanned yet: nothing to judge
    svc.scans.run()

    made = svc.quarantines.list()
    assert [(q.project, q.digest, q.automatic) for q in made] == [("team", web, True)]
    q = made[0]
    highs = {
        f.advisory_id
        for f in svc.scans.result(web).findings  # type: ignore[union-attr]
        if f.severity in ("HIGH", "CRITICAL")
    }
    assert q.advisory_id in highs and q.advisory_id in q.reason and q.quarantined_by == "system"
    with pytest.raises(Denied, match="quarantined") as refused:
        _pull(svc, "team/web", "latest")
    assert q.advisory_id is not None and q.advisory_id in refused.value.message
    _pull(svc, "calm/web", "latest")  # the other project is not affected
    # The event: audited and in the outbox for webhooks.
    events, _ = svc.audit.query(AuditFilter(digest=web, action="quarantine"))
    assert len(events) == 1 and events[0]["detail"]["automatic"] is True
    assert events[0]["detail"]["advisory"] == q.advisory_id
    assert [e.payload["advisory"] for e in svc.outbox.read(limit=1000) if e.kind == "image.quarantined"] == [
        q.advisory_id
    ]

    # The registry-wide question says where it is quarantined.
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        hits = client.get(f"/api/v1/vulnerabilities/{q.advisory_id}/images", headers=ADMIN).json()
    where = {loc["repository"]: loc["quarantined"] for hit in hits if hit["digest"] == web for loc in hit["locations"]}
    assert where == {"team/web": True, "calm/web": False}

    # Released by hand, it is served again; the rule applies again when its findings are next written
    # (a new scan, or a re-evaluation that changes them).
    svc.quarantines.release("team/web", web)
    _pull(svc, "team/web", "latest")


def test_allowlisted_findings_do_not_quarantine(services: Services, node_layer: bytes) -> None:
    svc = services
    _project(svc, "team", "high")
    web = image(svc, "team/web", [BASE, node_layer], "latest")
    svc.scans.run()
    assert len(svc.quarantines.list()) == 1
    highs = [
        f
        for f in svc.scans.result(web).findings  # type: ignore[union-attr]
        if f.severity in ("HIGH", "CRITICAL")
    ]
    svc.quarantines.release("team/web", web)
    # Allowlist every finding at or above HIGH (half by CVE alias): a new scan quarantines nothing.
    allow = [f.aliases[0] if i % 2 and f.aliases else f.advisory_id for i, f in enumerate(highs)]
    svc.projects.set_scan_policy("team", vulnerability_allowlist=allow)
    svc.scan_policies.forget()
    svc.scans.request("team/web", web)
    svc.scans.run()
    assert svc.quarantines.list() == []
    # A rule above every finding's severity quarantines nothing either.
    svc.projects.set_scan_policy("team", vulnerability_allowlist=[])
    svc.scan_policies.forget()
    _project(svc, "team", "critical")
    worst = {f.severity for f in svc.scans.result(web).findings}  # type: ignore[union-attr]
    svc.scans.request("team/web", web)
    svc.scans.run()
    assert bool(svc.quarantines.list()) == ("CRITICAL" in worst)


def test_a_database_update_quarantines_images_that_gain_findings(services: Services, node_layer: bytes) -> None:
    svc = services
    db = svc.scans.vulndb
    npm_source = str((shared_vulndb() / "npm" / "all.zip").resolve())
    db.import_records(npm_source, [])  # the npm feed, emptied
    svc.scans.refresh()
    _project(svc, "team", "high")
    web = image(svc, "team/web", [node_layer], "latest")  # npm packages only: nothing found yet
    svc.scans.run()
    assert svc.scans.result(web).findings == []  # type: ignore[union-attr]
    assert svc.quarantines.list() == []

    db._conn.execute("UPDATE sources SET sha256 = NULL WHERE url = ?", (npm_source,))
    result = svc.scans.update_vulndb([npm_source])
    assert result is not None and web in result.gained
    made = svc.quarantines.list()
    assert [(q.digest, q.automatic) for q in made] == [(web, True)]
    assert made[0].advisory_id is not None and made[0].advisory_id.startswith("GHSA-")
    with pytest.raises(Denied, match=made[0].advisory_id):
        _pull(svc, "team/web", "latest")
