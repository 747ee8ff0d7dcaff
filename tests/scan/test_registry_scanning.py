"""Scanning inside the registry, on SQLite and PostgreSQL: images pushed through the services are
queued and scanned from stored blobs, layers are inventoried once, results answer registry-wide
questions, a database update re-evaluates stored images without reading a layer, and project
policies refuse pulls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog.testing

from dockyard.oci import mediatypes as mt
from dockyard.scan.vulndb import VulnDB
from dockyard.services.audit import AuditFilter
from dockyard.services.errors import Denied
from dockyard.wiring import Services
from tests.lifecycle.conftest import image, push_blob, sha256
from tests.scan.conftest import shared_vulndb
from tests.scan.images import layer_tar
from tests.scan.test_inventory import DEBIAN_11
from tests.scan.test_matching import BULLSEYE_STATUS


@pytest.fixture
def svc(services: Services) -> Services:
    return services  # the scanning services of conftest, under the short name these tests use


@pytest.fixture(scope="module")
def python_layer(tmp_path_factory: pytest.TempPathFactory, site_packages: Path) -> bytes:
    return layer_tar({"usr/local/lib/python3.11/site-packages": site_packages})


@pytest.fixture(scope="module")
def node_layer(node_modules: Path) -> bytes:
    return layer_tar({"srv/app/node_modules": node_modules})


BASE = layer_tar({"etc/os-release": DEBIAN_11, "var/lib/dpkg/status": BULLSEYE_STATUS})


def advisories(svc: Services, digest: str) -> set[str]:
    result = svc.scans.result(digest)
    assert result is not None
    return {f.advisory_id for f in result.findings}


def test_pushed_images_are_scanned_from_storage_and_share_layer_inventories(
    svc: Services, python_layer: bytes, node_layer: bytes
) -> None:
    app = image(svc, "team/app", [BASE, python_layer], "1.0")
    web = image(svc, "team/web", [BASE, node_layer], "latest")
    assert svc.scans.status(app) is not None and svc.scans.status(app)["status"] == "queued"  # type: ignore[index]
    run = svc.scans.run()
    assert (run.scanned, run.failed) == (2, 0)
    assert (run.layers_read, run.layers_reused) == (3, 1)  # the base layer was read once for both images

    assert {"PYSEC-2018-28", "PYSEC-2019-217", "DSA-5343-1"} <= advisories(svc, app)
    assert {"GHSA-p6mc-m468-83gw", "DSA-5343-1"} <= advisories(svc, web)
    assert not any(a.startswith("GHSA-") for a in advisories(svc, app))
    status = svc.scans.status(app)
    assert status is not None and status["distro"] == "debian-11" and status["summary"]["UNKNOWN"] > 0

    # Registry-wide: which images does CVE-2018-18074 (requests, PYSEC-2018-28) affect, and where are they?
    hits = svc.scans.images_affected_by("CVE-2018-18074")
    assert [(h["digest"], h["advisory_id"]) for h in hits] == [(app, "PYSEC-2018-28")]
    assert hits[0]["locations"] == [{"repository": "team/app", "tags": ["1.0"], "more_tags": False}]
    # Debian's advisory reached through its CVE: both images carry that openssl.
    assert {h["digest"] for h in svc.scans.images_affected_by("CVE-2023-0286")} == {app, web}
    with_requests = svc.scans.images_with_package("requests", "2.19.1")
    assert [h["digest"] for h in with_requests] == [app]
    assert svc.scans.images_with_package("requests", "2.20.0") == []

    events, _ = svc.audit.query(AuditFilter(digest=app, action="scan"))
    assert len(events) == 1 and events[0]["repository"] == "team/app"

    # Deleting the last copy of an image deletes its results; the other image keeps its own.
    svc.manifests.delete("team/web", web)
    assert svc.scans.status(web) is None and svc.scans.images_with_package("lodash") == []
    assert {h["digest"] for h in svc.scans.images_affected_by("CVE-2023-0286")} == {app}


def test_an_index_is_scanned_per_platform(svc: Services, python_layer: bytes) -> None:
    amd = image(svc, "team/multi", [BASE, python_layer], None)
    arm = image(svc, "team/multi", [BASE], None)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": 1, "platform": {"os": "linux", "architecture": a}}
            for d, a in ((amd, "amd64"), (arm, "arm64"))
        ],
    }
    body = json.dumps(_sized(svc, "team/multi", index)).encode()
    svc.manifests.put("team/multi", "v1", body, mt.OCI_INDEX)
    svc.scans.run()
    svc.scans.run()
    assert svc.scans.status(sha256(body))["status"] == "done"  # type: ignore[index]
    assert "PYSEC-2018-28" in advisories(svc, amd)
    assert "PYSEC-2018-28" not in advisories(svc, arm)
    hits = svc.scans.images_affected_by("PYSEC-2018-28")
    assert hits[0]["digest"] == amd
    # reached through the index
    assert {"repository": "team/multi", "tags": ["v1"], "more_tags": False} in hits[0]["locations"]


def _sized(svc: Services, repo: str, index: dict) -> dict:  # type: ignore[type-arg]
    for desc in index["manifests"]:
        desc["size"] = len(svc.manifests.get(repo, desc["digest"]).content)
    return index


def test_a_database_update_re_evaluates_stored_images_without_reading_layers(
    svc: Services, tmp_path: Path, node_layer: bytes
) -> None:
    # Start from a database without the npm advisories.
    db = svc.scans.vulndb
    npm_source = str((shared_vulndb() / "npm" / "all.zip").resolve())
    db.import_records(npm_source, [])  # the npm feed, emptied: its 14 advisories are removed
    svc.scans.refresh()
    web = image(svc, "team/web", [BASE, node_layer], "latest")
    svc.scans.run()
    assert not any(a.startswith("GHSA-") for a in advisories(svc, web))

    # Layer bytes are gone from storage: re-evaluation must work from stored inventories alone.
    for digest in list(svc.store.list_digests()):
        svc.store.delete(digest)
    db._conn.execute("UPDATE sources SET sha256 = NULL WHERE url = ?", (npm_source,))
    result = svc.scans.update_vulndb([npm_source])
    assert result is not None and result.images == 1 and result.changed == 1
    gained = set(result.gained[web])
    assert {"GHSA-p6mc-m468-83gw", "GHSA-35jh-r3h4-6jhm", "GHSA-vh95-rmgr-6w4m"} <= gained
    assert gained <= advisories(svc, web)
    events, _ = svc.audit.query(AuditFilter(digest=web, action="scan.new_findings"))
    assert len(events) == 1 and "GHSA-p6mc-m468-83gw" in events[0]["detail"]["advisories"]
    # Nothing changed since: the next scheduled update re-evaluates nothing.
    assert svc.scans.update_vulndb([npm_source]) is None


def test_project_policies_refuse_pulls(svc: Services, node_layer: bytes) -> None:
    web = image(svc, "team/web", [BASE, node_layer], "latest")
    stored = svc.manifests.get("team/web", "latest")
    if not _exists(svc, "team"):
        svc.projects.create("team")
    svc.projects.set_scan_policy("team", block_unscanned=True)
    svc.gates.forget()
    with pytest.raises(Denied, match="not been scanned"):
        svc.gates.check_pull("team/web", web, stored.media_type, stored.content)

    svc.scans.run()
    svc.projects.set_scan_policy("team", block_unscanned=False, block_severity="high")
    svc.gates.forget()
    with pytest.raises(Denied) as refused:
        svc.gates.check_pull("team/web", web, stored.media_type, stored.content)
    assert "GHSA-p6mc-m468-83gw" in refused.value.message and "HIGH" in refused.value.message

    # Allowlisting the HIGH ones (by advisory id or by CVE) lets the pull through.
    highs = [f for f in svc.scans.result(web).findings if f.severity in ("HIGH", "CRITICAL")]  # type: ignore[union-attr]
    assert highs
    allow = [f.aliases[0] if i % 2 else f.advisory_id for i, f in enumerate(highs)]
    svc.projects.set_scan_policy("team", vulnerability_allowlist=allow)
    svc.gates.forget()
    svc.gates.check_pull("team/web", web, stored.media_type, stored.content)

    # Licences: lodash and minimist are MIT-licensed.
    svc.projects.set_scan_policy("team", licence_denylist=["MIT"], block_denied_licences=True)
    svc.gates.forget()
    with pytest.raises(Denied, match="denied licences MIT"):
        svc.gates.check_pull("team/web", web, stored.media_type, stored.content)
    # Another project without rules serves the same image.
    image(svc, "other/web", [BASE, node_layer], "latest")
    svc.gates.check_pull("other/web", web, stored.media_type, stored.content)


def _exists(svc: Services, name: str) -> bool:
    return any(p.name == name for p in svc.projects.list_projects())


def test_scan_on_push_can_be_turned_off_per_project_and_scans_requested(svc: Services, python_layer: bytes) -> None:
    if not _exists(svc, "quiet"):
        svc.projects.create("quiet")
    svc.projects.set_scan_policy("quiet", scan_on_push=False)
    digest = image(svc, "quiet/app", [BASE, python_layer], "1")
    run = svc.scans.run()
    assert run.skipped == 1 and svc.scans.status(digest)["status"] == "skipped"  # type: ignore[index]
    svc.scans.request("quiet/app", digest)
    run = svc.scans.run()
    assert run.scanned == 1 and "PYSEC-2018-28" in advisories(svc, digest)


def test_an_artifact_is_not_an_image_and_a_corrupt_layer_fails_cleanly(svc: Services) -> None:
    config = b"{}"
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": push_blob(svc, "team/a", config),
                   "size": 2},
        "layers": [],
    }  # fmt: skip
    body = json.dumps(doc).encode()
    svc.manifests.put("team/a", "sbom", body, mt.OCI_MANIFEST)
    bad = image(svc, "team/bad", [b"\x1f\x8b\x08\x00 definitely not gzip"], "x")
    for _ in range(3):  # retried, then given up
        svc.scans.run()
    assert svc.scans.status(sha256(body))["status"] == "unsupported"  # type: ignore[index]
    failed = svc.scans.status(bad)
    assert failed is not None and failed["status"] == "failed" and failed["error"]


def test_an_update_made_elsewhere_is_picked_up_by_the_scan_duty(svc: Services, node_layer: bytes) -> None:
    npm_source = str((shared_vulndb() / "npm" / "all.zip").resolve())
    svc.scans.vulndb.import_records(npm_source, [])
    web = image(svc, "team/web", [BASE, node_layer], "latest")
    svc.scans.run()
    assert not any(a.startswith("GHSA-") for a in advisories(svc, web))
    # `dockyard vulndb update` in another process, on the same database folder.
    other = VulnDB(svc.scans.vulndb.folder)
    other._conn.execute("UPDATE sources SET sha256 = NULL WHERE url = ?", (npm_source,))
    assert other.import_source(npm_source).added == 14
    other.close()
    svc.scans.run()  # the next pass of the scan duty notices the new generation
    assert "GHSA-p6mc-m468-83gw" in advisories(svc, web)


def test_one_scan_failure_is_logged_once_per_run_with_its_type(svc: Services) -> None:
    """A failing image is requeued for the next run, not retried (and logged again) within the same run."""
    bad = image(svc, "team/bad", [b"\x1f\x8b\x08\x00 definitely not gzip"], "x")
    with structlog.testing.capture_logs() as logs:
        run = svc.scans.run()
    failures = [e for e in logs if e["event"] == "scan failed"]
    assert run.failed == 1 and len(failures) == 1
    assert failures[0]["digest"] == bad and failures[0]["error_type"] and failures[0]["error"]
    assert failures[0]["will_retry"] is True
    status = svc.scans.status(bad)
    assert status is not None and status["status"] == "queued"
