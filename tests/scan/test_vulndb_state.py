"""Scan results tell what they were matched against: an empty vulnerability database is no all-clear,
a stale one says so, everywhere (reports, SBOMs, the API, metrics, the log, the pull gate)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog.testing
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.scan.model import DatabaseInfo, Package, ScanResult
from dockyard.scan.report import render_cyclonedx, render_json, render_spdx, render_table
from dockyard.scan.vulndb import VulnDB, expand_sources
from dockyard.services.errors import Denied
from dockyard.services.lifecycle.maintenance import Duty, Maintenance
from dockyard.wiring import Services, build_services, maintenance, prepare
from tests.api.conftest import ADMIN, make_settings
from tests.lifecycle.conftest import image
from tests.scan.conftest import shared_vulndb
from tests.scan.images import layer_tar
from tests.scan.test_inventory import ALPINE
from tests.scan.test_matching import APK_INSTALLED

ALPINE_IMAGE = layer_tar({"etc/os-release": ALPINE, "lib/apk/db/installed": APK_INSTALLED})
ALPINE_ZIP = shared_vulndb() / "Alpine" / "all.zip"


@pytest.fixture
def empty(tmp_path: Path, database: Database) -> Iterator[Services]:
    """The registry's services as on a fresh start: a vulnerability database with nothing in it."""
    svc = build_services(make_settings(tmp_path, database), db=database)
    prepare(svc)
    yield svc
    svc.scans.vulndb.close()


def test_a_scan_against_an_empty_database_is_not_a_clean_image(empty: Services) -> None:
    digest = image(empty, "team/alpine", [ALPINE_IMAGE], "3.11")
    with structlog.testing.capture_logs() as logs:
        assert empty.scans.run().scanned == 1
    assert any(e["event"].startswith("the vulnerability database is empty") for e in logs)
    status = empty.scans.status(digest)
    assert status is not None and status["status"] == "done" and sum(status["summary"].values()) == 0
    info = status["vulnerability_database"]
    assert info is not None and (info.state, info.advisories, info.generation) == ("empty", 0, 0)

    # The pull gate: "scanned against no data" is not scanned.
    empty.projects.create("team")
    empty.projects.set_scan_policy("team", block_unscanned=True)
    empty.gates.forget()
    stored = empty.manifests.get("team/alpine", "3.11")
    with pytest.raises(Denied, match="empty vulnerability database"):
        empty.gates.check_pull("team/alpine", digest, stored.media_type, stored.content)

    # Loaded (offline, from a folder of <ecosystem>/all.zip): the stored image is re-evaluated, and is
    # now scanned, with the advisories it always had.
    folder = Path(empty.settings.data_dir) / "osv"
    (folder / "Alpine").mkdir(parents=True)
    (folder / "Alpine" / "all.zip").write_bytes(ALPINE_ZIP.read_bytes())
    result = empty.scans.update_vulndb([str(folder)])
    assert result is not None and result.changed == 1
    status = empty.scans.status(digest)
    assert status is not None and status["vulnerability_database"].state == "current"
    found = {f.advisory_id for f in empty.scans.result(digest).findings}  # type: ignore[union-attr]
    assert {"ALPINE-CVE-2019-1547", "ALPINE-CVE-2019-1549", "ALPINE-CVE-2019-1551"} <= found
    empty.gates.check_pull("team/alpine", digest, stored.media_type, stored.content)


def test_the_api_reports_and_metrics_show_an_empty_then_a_stale_database(empty: Services) -> None:
    empty.projects.create("team")
    digest = image(empty, "team/alpine", [ALPINE_IMAGE], "3.11")
    empty.scans.run()
    with TestClient(create_app(empty), base_url="http://registry.test") as http:
        vulndb = http.get("/api/v1/vulndb", headers=ADMIN).json()
        assert (vulndb["advisories"], vulndb["generation"], vulndb["state"]) == (0, 0, "empty")
        assert vulndb["stale_after_seconds"] == 7 * 86400
        report = http.get("/api/v1/repositories/team/alpine/manifests/3.11/scan", headers=ADMIN).json()
        assert report["images"][0]["vulnerability_database"]["state"] == "empty"
        assert "dockyard_vulndb_stale 1.0" in http.get("/metrics", headers=ADMIN).text

        empty.scans.vulndb.import_source(str(ALPINE_ZIP))
        empty.scans.reevaluate()
        vulndb = http.get("/api/v1/vulndb", headers=ADMIN).json()
        assert vulndb["state"] == "current" and vulndb["advisories"] > 0 and vulndb["age_seconds"] < 3600
        metrics = http.get("/metrics", headers=ADMIN).text
        assert "dockyard_vulndb_stale 0.0" in metrics and "dockyard_vulndb_advisories" in metrics

        # Its source last read successfully 30 days ago: stale, in the report, the API, the metrics, the log.
        conn = sqlite3.connect(empty.scans.vulndb.path)
        conn.execute("UPDATE sources SET ok_at = '2000-01-01T00:00:00+00:00'")
        conn.commit()
        conn.close()
        vulndb = http.get("/api/v1/vulndb", headers=ADMIN).json()
        assert vulndb["state"] == "stale" and vulndb["updated_at"].startswith("2000-01-01")
        image_report = http.get("/api/v1/repositories/team/alpine/manifests/3.11/scan", headers=ADMIN).json()
        assert image_report["images"][0]["vulnerability_database"]["state"] == "stale"
        assert "dockyard_vulndb_stale 1.0" in http.get("/metrics", headers=ADMIN).text
        sbom = http.get("/api/v1/repositories/team/alpine/manifests/3.11/sbom", headers=ADMIN).json()
        props = {p["name"]: p["value"] for p in sbom["metadata"]["properties"]}
        assert props["dockyard:vulndb:state"] == "stale" and props["dockyard:vulndb:generation"] == "1"
        image(empty, "team/alpine", [ALPINE_IMAGE, layer_tar({"x": b"1"})], "next")
        with structlog.testing.capture_logs() as logs:
            empty.scans.run()
        assert any(e["event"] == "the vulnerability database is stale" for e in logs)
        assert empty.scans.status(digest)["vulnerability_database"].state == "stale"  # type: ignore[index]


def test_unreachable_sources_are_logged_clearly(empty: Services) -> None:
    with structlog.testing.capture_logs() as logs:
        empty.scans.update_vulndb(["http://127.0.0.1:1/Debian/all.zip", "/nonexistent/osv"])
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "no vulnerability source could be read" in errors[0]["event"]
    assert sum(1 for e in logs if e["event"].startswith("vulnerability source failed")) == 2
    assert any(e["event"].startswith("the vulnerability database is empty") for e in logs)


def test_an_empty_database_is_updated_at_first_start(tmp_path: Path, database: Database) -> None:
    settings = make_settings(tmp_path, database).model_copy(
        update={"vulndb_sources": [str(ALPINE_ZIP)], "vulndb_update_interval_seconds": 21600}
    )
    svc = build_services(settings, db=database)
    prepare(svc)
    ran = threading.Event()
    vulndb = next(d for d in maintenance(svc).duties if d.name == "vulndb")
    assert vulndb.interval == 21600 and vulndb.due_at_start is not None and vulndb.due_at_start()

    def action() -> object:
        result = vulndb.action()
        ran.set()
        return result

    loop = Maintenance(svc.db, [Duty("vulndb", vulndb.interval, action, due_at_start=vulndb.due_at_start)], tick=0.01)
    loop.start()
    try:
        assert ran.wait(60), "the update did not run at start"
    finally:
        loop.stop()
    assert svc.scans.vulndb.count() > 0
    # A database with data waits for its interval as before.
    assert not vulndb.due_at_start()
    svc.scans.vulndb.close()


def test_sources_expand_a_folder_of_ecosystem_zips(tmp_path: Path) -> None:
    (tmp_path / "osv" / "PyPI").mkdir(parents=True)
    (tmp_path / "osv" / "PyPI" / "all.zip").write_bytes(b"")
    (tmp_path / "none").mkdir()
    expanded = expand_sources([str(tmp_path / "osv"), "https://x.test/a.zip", str(tmp_path / "none")])
    assert expanded == [str((tmp_path / "osv" / "PyPI" / "all.zip").resolve()), "https://x.test/a.zip",
                        str(tmp_path / "none")]  # fmt: skip
    db = VulnDB(tmp_path / "db")
    [failed] = db.update([str(tmp_path / "none")])
    assert "without <ecosystem>/all.zip" in str(failed)


def test_the_cli_loads_a_database_from_a_local_folder(tmp_path: Path) -> None:
    from dockyard.cli import app

    result = CliRunner().invoke(
        app,
        ["vulndb", "update", "--source", str(shared_vulndb()), "--path", str(tmp_path / "db")],
        env={"DOCKYARD_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    db = VulnDB(tmp_path / "db")
    assert {s.url.split("/")[-2] for s in db.sources()} == {"Alpine", "Debian", "Go", "PyPI", "npm"}
    assert db.snapshot().advisories == db.count() > 1000 and db.snapshot().updated_at is not None


def test_a_database_file_from_before_keeps_its_last_good_check(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    conn = sqlite3.connect(folder / "vulndb.sqlite")
    conn.execute(
        "CREATE TABLE sources (url TEXT PRIMARY KEY, checked_at TEXT, updated_at TEXT, etag TEXT,"
        " last_modified TEXT, sha256 TEXT, records INTEGER, added INTEGER, changed INTEGER, removed INTEGER,"
        " error TEXT)"
    )
    conn.execute("INSERT INTO sources (url, checked_at, updated_at) VALUES ('a', '2026-01-02T00:00:00+00:00', "
                 "'2026-01-01T00:00:00+00:00')")  # fmt: skip
    conn.execute("INSERT INTO sources (url, checked_at, updated_at, error) VALUES ('b', '2026-01-05T00:00:00+00:00', "
                 "'2026-01-03T00:00:00+00:00', 'HTTP 500')")  # fmt: skip
    conn.commit()
    conn.close()
    db = VulnDB(folder)
    assert db.updated_at() == pytest.approx(1767312000.0)  # a's last (good) check, older than b's last change


@pytest.mark.parametrize("state", ["empty", "stale", "current"])
def test_every_report_format_names_the_database(state: str) -> None:
    now = 1_800_000_000.0
    updated = {"empty": None, "stale": now - 30 * 86400, "current": now - 3600}[state]
    info = DatabaseInfo.of(0 if state == "empty" else 7, 0 if state == "empty" else 1234, updated, now=now)
    assert info.state == state
    pkg = Package("apk", "musl", "1.1.24-r2", "lib/apk/db/installed", "pkg:apk/alpine/musl@1.1.24-r2")
    result = ScanResult([pkg], [], None, info)
    table = render_table(result, console_width=200)
    doc = render_json(result)
    assert doc["vulnerability_database"]["state"] == state and doc["vulnerability_database"]["generation"] == (
        0 if state == "empty" else 7
    )
    cdx = json.loads(render_cyclonedx(result, name="img"))
    props = {p["name"]: p["value"] for p in cdx["metadata"]["properties"]}
    assert props["dockyard:vulndb:state"] == state
    spdx = render_spdx(result, name="img", namespace_seed="x")
    assert "vulnerability database" in spdx["creationInfo"]["comment"]
    if state == "empty":
        assert "EMPTY" in table and "No known vulnerabilities" not in table
    elif state == "stale":
        assert "STALE" in table and "30 days old" in table and props["dockyard:vulndb:age-seconds"] == str(30 * 86400.0)
    else:
        assert (
            "generation 7, 1234 advisories" in table and "60 min old" in table and "No known vulnerabilities" in table
        )
