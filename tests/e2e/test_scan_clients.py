"""Scanning in the real server: an image of real packages pushed with skopeo is scanned in the
background against a database made by `dockyard vulndb update`; the report matches what
`dockyard scan` says of the same layout; a project policy then makes skopeo's pull fail with the
findings named."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DOCKYARD, PATIENCE, Server, require_tool, run, running_server
from tests.scan.conftest import node_modules, shared_vulndb, site_packages
from tests.scan.images import debian_app_layout

pytestmark = pytest.mark.e2e
__all__ = ["node_modules", "site_packages"]  # the real-package fixtures of the scanner tests


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def scan_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp(f"scan-{request.param}")
    feeds = [str(shared_vulndb() / e / "all.zip") for e in ("PyPI", "npm", "Debian")]
    update = [str(DOCKYARD), "vulndb", "update", "--path", str(data / "vulndb")]
    for f in feeds:
        update += ["--source", f]
    subprocess.run(update, check=True, capture_output=True, timeout=300, env={"DOCKYARD_DATA_DIR": str(data)})
    env = {"DOCKYARD_SCAN_INTERVAL_SECONDS": "0.5", "DOCKYARD_VULNDB_SOURCES": json.dumps(feeds)}
    with running_server(data, request.param, env) as srv:
        yield srv


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def test_push_scan_report_and_policy_refusal(
    scan_server: Server, tmp_path: Path, site_packages: Path, node_modules: Path
) -> None:
    srv = scan_server
    layout = debian_app_layout(tmp_path / "layout", site_packages, node_modules)
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", srv.creds, f"oci:{layout}:latest",
           f"docker://{srv.host}/team/app:1.0")  # fmt: skip

    api = httpx.Client(base_url=srv.url, auth=(srv.username, srv.password), timeout=30)
    deadline = time.monotonic() + PATIENCE
    while True:
        report = api.get("/api/v1/repositories/team/app/manifests/1.0/scan").json()
        if report["images"][0]["status"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    image = report["images"][0]
    assert image["status"] == "done", report
    server_ids = {f["advisory_id"] for f in image["findings"]}
    assert {"PYSEC-2018-28", "GHSA-p6mc-m468-83gw", "DSA-5343-1"} <= server_ids

    # The command-line scanner, on the layout that was pushed, finds exactly the same.
    cli = subprocess.run(
        [str(DOCKYARD), "scan", str(layout), "--vulndb", str(shared_vulndb()), "--format", "json"],
        capture_output=True, text=True, timeout=300, env={"HOME": str(tmp_path)},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert {f["advisory_id"] for f in json.loads(cli.stdout)["findings"]} == server_ids

    hits = api.get("/api/v1/vulnerabilities/CVE-2018-18074/images").json()
    assert [h["locations"] for h in hits] == [
        [{"repository": "team/app", "tags": ["1.0"], "more_tags": False, "quarantined": False}]
    ]

    assert api.patch("/api/v1/projects/team/scan-policy", json={"block_severity": "high"}).status_code == 200
    time.sleep(1.2)  # each replica re-reads a project's policy at most once a second
    out = tmp_path / "pulled"
    pull = skopeo("copy", "--src-tls-verify=false", "--src-creds", srv.creds,
                  f"docker://{srv.host}/team/app:1.0", f"oci:{out}:latest", check=False)  # fmt: skip
    assert pull.returncode != 0
    assert "pull refused by project policy" in pull.stderr and "GHSA-" in pull.stderr

    cdx = api.get("/api/v1/repositories/team/app/manifests/1.0/sbom")
    assert cdx.status_code == 200 and any(v["id"] == "GHSA-p6mc-m468-83gw" for v in cdx.json()["vulnerabilities"])
