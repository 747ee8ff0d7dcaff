"""`dockyard scan` and `dockyard vulndb` as a CI pipeline runs them: the real command, a local OCI
layout of real packages, the shared OSV zips; exit codes follow --fail-on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.scan.model import at_least
from tests.scan.conftest import shared_vulndb
from tests.scan.images import debian_app_layout


def dockyard(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "DOCKYARD_DATA_DIR": str(home / "data")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "dockyard"), *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, site_packages: Path, node_modules: Path) -> Path:
    root = tmp_path_factory.mktemp("cli")
    return debian_app_layout(root / "image", site_packages, node_modules)


def test_json_report_and_fail_on_exit_codes(layout: Path, tmp_path: Path) -> None:
    feeds = str(shared_vulndb())
    out = dockyard("scan", str(layout), "--vulndb", feeds, "--format", "json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    ids = {f["advisory_id"] for f in doc["findings"]}
    assert {"PYSEC-2018-28", "GHSA-p6mc-m468-83gw", "DSA-5343-1"} <= ids
    refs = {p["ref"] for p in doc["packages"]}
    assert all(f["package"] in refs for f in doc["findings"])
    severities = [f["severity"] for f in doc["findings"]]
    for level in ("critical", "high", "medium", "low"):
        expected = 1 if any(at_least(s, level) for s in severities) else 0
        run = dockyard(
            "scan", str(layout), "--vulndb", feeds, "--fail-on", level, "-o", str(tmp_path / "r"), home=tmp_path
        )
        assert run.returncode == expected, (level, run.stderr)
    assert "HIGH" in severities  # lodash: so --fail-on high did fail above


def test_table_and_cyclonedx_for_other_tools(layout: Path, tmp_path: Path) -> None:
    feeds = str(shared_vulndb())
    table = dockyard("scan", str(layout), "--vulndb", feeds, home=tmp_path)
    assert table.returncode == 0 and "PYSEC-2018-28" in table.stdout and "2.20.0" in table.stdout
    cdx = dockyard("scan", str(layout), "--vulndb", feeds, "--format", "cyclonedx", home=tmp_path)
    bom = json.loads(cdx.stdout)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] in ("1.5", "1.6")
    components = {c["bom-ref"]: c for c in bom["components"]}
    assert any(c.get("purl") == "pkg:pypi/requests@2.19.1" for c in components.values())
    vuln = next(v for v in bom["vulnerabilities"] if v["id"] == "PYSEC-2018-28")
    assert [components[a["ref"]]["name"] for a in vuln["affects"]] == ["requests"]
    assert any(r["id"] == "CVE-2018-18074" for r in vuln.get("references", []))

    inventory = dockyard("scan", str(layout), "--inventory-only", "--format", "cyclonedx", home=tmp_path)
    assert inventory.returncode == 0, inventory.stderr
    bom = json.loads(inventory.stdout)
    assert "vulnerabilities" not in bom or bom["vulnerabilities"] == []
    assert len(bom["components"]) == len(components)
    spdx = json.loads(dockyard("scan", str(layout), "--inventory-only", "--format", "spdx", home=tmp_path).stdout)
    assert spdx["spdxVersion"] == "SPDX-2.3"


def test_a_database_folder_from_vulndb_update_and_clear_errors(layout: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    zips = [str(shared_vulndb() / e / "all.zip") for e in ("PyPI", "npm")]
    update = dockyard("vulndb", "update", "--path", str(db), "--source", zips[0], "--source", zips[1], home=tmp_path)
    assert update.returncode == 0, update.stderr
    assert "2675 advisories" in update.stdout  # 2,661 PyPI + 14 npm
    again = dockyard("vulndb", "update", "--path", str(db), "--source", zips[0], home=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("current")
    offline = dockyard("vulndb", "update", "--path", str(db), "--source", "http://127.0.0.1:1/x/all.zip", home=tmp_path)
    assert offline.returncode == 1 and "failed" in offline.stderr and "2675 advisories" in offline.stdout
    status = dockyard("vulndb", "status", "--path", str(db), home=tmp_path)
    assert status.returncode == 0 and "2675 advisories" in status.stdout

    run = dockyard("scan", str(layout), "--vulndb", str(db), "--format", "json", home=tmp_path)
    ids = {f["advisory_id"] for f in json.loads(run.stdout)["findings"]}
    assert "PYSEC-2018-28" in ids and not any(i.startswith("DSA-") for i in ids)  # no Debian feed in this one

    no_image = dockyard("scan", str(tmp_path / "nothing-here"), "--inventory-only", home=tmp_path)
    assert no_image.returncode == 2 and "does not exist" in no_image.stderr
    no_db = dockyard("scan", str(layout), home=tmp_path)
    assert no_db.returncode == 2 and "vulndb update" in no_db.stderr
