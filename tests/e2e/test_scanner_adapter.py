"""The Harbor Scanner Adapter API v1.1, both sides for real: `dockyard scanner-adapter` serves it as a
separate process; a registry configured with `external_scanner_url` scans through it. The adapter
pulls the image from the registry with the short-lived token the registry gives it (past the
project's "no unscanned pulls" rule), and the registry stores the findings it reports."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DOCKYARD, PATIENCE, Server, free_port, process, require_tool, run, running_server
from tests.scan.conftest import node_modules, shared_vulndb, site_packages
from tests.scan.images import debian_app_layout
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e
__all__ = ["node_modules", "site_packages"]  # the real-package fixtures of the scanner tests

SECRET = "Bearer adapter-secret"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("adapter")
    update = [str(DOCKYARD), "vulndb", "update", "--path", str(folder / "vulndb")]
    for ecosystem in ("PyPI", "npm", "Debian"):
        update += ["--source", str(shared_vulndb() / ecosystem / "all.zip")]
    subprocess.run(update, check=True, capture_output=True, timeout=300, env={"DOCKYARD_DATA_DIR": str(folder)})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(
        [str(DOCKYARD), "scanner-adapter", "--port", str(port), "--vulndb", str(folder / "vulndb"),
         "--allow-registry", "127.0.0.1"],
        {**os.environ, "DOCKYARD_ADAPTER_AUTHORIZATION": SECRET},
        folder / "adapter.log",
        f"{url}/api/v1/metadata",
        headers={"Authorization": SECRET},
    ):  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def registry(adapter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "DOCKYARD_EXTERNAL_SCANNER_URL": adapter,
        "DOCKYARD_EXTERNAL_SCANNER_AUTHORIZATION": SECRET,
        "DOCKYARD_SCAN_INTERVAL_SECONDS": "0.5",
    }
    with running_server(tmp_path_factory.mktemp("registry"), "sqlite", env) as srv:
        yield srv


def test_adapter_protocol(adapter: str) -> None:
    meta = httpx.get(f"{adapter}/api/v1/metadata", headers={"Authorization": SECRET}, timeout=TIMEOUT)
    assert meta.headers["content-type"].startswith("application/vnd.scanner.adapter.metadata+json; version=1.0")
    caps = meta.json()["capabilities"][0]
    assert "application/vnd.oci.image.manifest.v1+json" in caps["consumes_mime_types"]
    assert "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.1" in caps["produces_mime_types"]
    assert httpx.get(f"{adapter}/api/v1/metadata", timeout=TIMEOUT).status_code == 401
    bad = httpx.post(
        f"{adapter}/api/v1/scan", json={"registry": {}}, headers={"Authorization": SECRET}, timeout=TIMEOUT
    )
    assert bad.status_code == 422 and bad.json()["error"]["message"]
    assert (
        httpx.post(
            f"{adapter}/api/v1/scan", content=b"{", headers={"Authorization": SECRET}, timeout=TIMEOUT
        ).status_code
        == 400
    )
    assert (
        httpx.get(f"{adapter}/api/v1/scan/nope/report", headers={"Authorization": SECRET}, timeout=TIMEOUT).status_code
        == 404
    )
    # Only the registries it was told about: nothing else is fetched for a caller.
    metadata_service = {
        "registry": {"url": "http://169.254.169.254"},
        "artifact": {"repository": "a/b", "digest": "sha256:" + "0" * 64},
    }
    refused = httpx.post(
        f"{adapter}/api/v1/scan", json=metadata_service, headers={"Authorization": SECRET}, timeout=TIMEOUT
    )
    assert refused.status_code == 403 and "allow-list" in refused.json()["error"]["message"]
    # A registry that is not there: the job fails and its report says why.
    nowhere = {
        "registry": {"url": "http://127.0.0.1:1"},
        "artifact": {"repository": "a/b", "digest": "sha256:" + "0" * 64},
    }
    job = httpx.post(f"{adapter}/api/v1/scan", json=nowhere, headers={"Authorization": SECRET}, timeout=TIMEOUT)
    assert job.status_code == 202
    for _ in range(100):
        report = httpx.get(
            f"{adapter}/api/v1/scan/{job.json()['id']}/report", headers={"Authorization": SECRET}, timeout=TIMEOUT
        )
        if report.status_code != 302:
            break
        time.sleep(0.1)
    assert report.status_code == 500 and report.json()["error"]["message"]


def test_adapter_refuses_to_start_unprotected(tmp_path: Path) -> None:
    env = {"DOCKYARD_DATA_DIR": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    cmd = [str(DOCKYARD), "scanner-adapter", "--port", str(free_port()), "--vulndb", str(tmp_path)]
    no_auth = subprocess.run([*cmd, "--allow-registry", "127.0.0.1"], capture_output=True, text=True, env=env)
    assert no_auth.returncode == 2 and "--authorization" in no_auth.stderr
    no_list = subprocess.run(cmd, capture_output=True, text=True, env={**env, "DOCKYARD_ADAPTER_AUTHORIZATION": SECRET})
    assert no_list.returncode == 2 and "allow" in no_list.stderr


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def test_the_registry_scans_through_the_adapter(
    registry: Server, adapter: str, tmp_path: Path, site_packages: Path, node_modules: Path
) -> None:
    api = httpx.Client(base_url=registry.url, auth=(registry.username, registry.password), timeout=30)
    assert api.post("/api/v1/projects", json={"name": "team"}).status_code == 201
    assert api.patch("/api/v1/projects/team/scan-policy", json={"block_unscanned": True}).status_code == 200
    layout = debian_app_layout(tmp_path / "layout", site_packages, node_modules)
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", registry.creds, f"oci:{layout}:latest",
           f"docker://{registry.host}/team/app:1.0")  # fmt: skip
    deadline = time.monotonic() + PATIENCE
    while True:
        image = api.get("/api/v1/repositories/team/app/manifests/1.0/scan").json()["images"][0]
        if image["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert image["status"] == "done", image
    assert image["scanner"] == f"external:{adapter}"
    ids = {f["advisory_id"] for f in image["findings"]}
    cli = subprocess.run(
        [str(DOCKYARD), "scan", str(layout), "--vulndb", str(shared_vulndb()), "--format", "json"],
        capture_output=True, text=True, timeout=300, env={"HOME": str(tmp_path)},
    )  # fmt: skip
    # The adapter's database has no Go or Alpine feed, which this image does not need.
    assert ids == {f["advisory_id"] for f in json.loads(cli.stdout)["findings"]}
    assert {"PYSEC-2018-28", "GHSA-p6mc-m468-83gw", "DSA-5343-1"} <= ids
    lodash = next(f for f in image["findings"] if f["advisory_id"] == "GHSA-p6mc-m468-83gw")
    assert lodash["severity"] == "HIGH" and lodash["purl"] == "pkg:npm/lodash@4.17.15"

    # The adapter pulled with the registry's scanner token, and it is on the record.
    pulls = api.get("/api/v1/audit", params={"action": "pull", "repository": "team/app"}).json()
    events = pulls["events"] if isinstance(pulls, dict) else pulls
    assert any(e["actor"] == "scanner$dockyard" for e in events)
    # Now scanned, so the project's rule lets people pull it.
    source = f"docker://{registry.host}/team/app:1.0"
    pulled = skopeo("copy", "--src-tls-verify=false", "--src-creds", registry.creds, source,
                    f"oci:{tmp_path / 'out'}:latest", check=False)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
