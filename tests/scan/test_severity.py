"""Severity for advisories that carry none (Debian's DSA/DLA, Alpine's): the CVSS of their CVEs from a
severity source (NVD CVE API 2.0 JSON, tests/scan/data/nvdcve-2.0-sample.json: records in the
published schema's shape, scores computed from their vectors, descriptions shortened), else from other
advisories of the same CVE, else the distribution's urgency; and then severity policies fire on
distribution packages."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from dockyard.scan.matcher import Matcher, Query
from dockyard.scan.osv import parse_record
from dockyard.scan.vulndb import SourceError, VulnDB, read_nvd, record_bytes
from dockyard.services.errors import Denied
from dockyard.wiring import Services
from tests.lifecycle.conftest import image
from tests.scan.test_registry_scanning import BASE
from tests.scan.test_vulndb_state import ALPINE_IMAGE

NVD = Path(__file__).parent / "data" / "nvdcve-2.0-sample.json"


def test_nvd_json_is_read_in_every_packaging(tmp_path: Path) -> None:
    ratings = read_nvd(NVD)
    assert ratings["CVE-2023-0286"] == ("HIGH", 7.4, "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H")
    assert ratings["CVE-2019-1547"][:2] == ("MEDIUM", 4.7)  # v3.1 preferred to the v2 metric beside it
    assert ratings["CVE-2019-1549"] == ("MEDIUM", 5.0, "AV:N/AC:L/Au:N/C:P/I:N/A:N")  # v2 only: baseSeverity outside
    assert "CVE-2019-0001" not in ratings  # rejected
    raw = NVD.read_bytes()
    (tmp_path / "nvdcve-2.0-2023.json.gz").write_bytes(gzip.compress(raw))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("nvdcve-2.0-2023.json", raw)
    (tmp_path / "nvdcve-2.0-2023.json.zip").write_bytes(buf.getvalue())
    for name in ("nvdcve-2.0-2023.json.gz", "nvdcve-2.0-2023.json.zip"):
        assert read_nvd(tmp_path / name) == ratings
    (tmp_path / "osv.json").write_text(json.dumps({"id": "X", "modified": "2020-01-01T00:00:00Z"}))
    with pytest.raises(SourceError, match=r"not an NVD CVE API 2\.0 document"):
        read_nvd(tmp_path / "osv.json")


def _record(ident: str, ecosystem: str, name: str, **extra: object) -> bytes:
    affected = {
        "package": {"ecosystem": ecosystem, "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}],
    }
    affected.update(extra.pop("affected_extra", {}))  # type: ignore[arg-type]
    return record_bytes({"id": ident, "modified": "2023-01-01T00:00:00Z", "affected": [affected], **extra})


def _severity(db: VulnDB) -> tuple[str, float | None]:
    [finding_hit] = Matcher(db).hits(Query("Debian", "11", "foo", "1.0"))
    adv = Matcher(db).advisory(finding_hit.source, finding_hit.advisory_id)
    return adv.severity, adv.score


def test_which_source_wins(tmp_path: Path) -> None:
    db = VulnDB(tmp_path / "db")
    # A Debian advisory with no rating of its own, for two CVEs; the tracker's urgency as the last resort.
    dsa = _record("DSA-1-1", "Debian:11", "foo", upstream=["CVE-2023-0286", "CVE-2099-0001"],
                  affected_extra={"ecosystem_specific": {"urgency": "low*"}})  # fmt: skip
    db.import_records("debian", [dsa])
    assert parse_record(json.loads(dsa)).urgency == "LOW"
    assert _severity(db) == ("LOW", None)  # only the urgency is known

    # Another ecosystem's advisory of the same CVE, with a vector: borrowed.
    ghsa = _record("GHSA-xxxx", "PyPI", "foo-py", aliases=["CVE-2099-0001"],
                   severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}])  # fmt: skip
    db.import_records("ghsa", [ghsa])
    assert _severity(db) == ("CRITICAL", 9.8)

    # The NVD's rating of the CVEs wins over other advisories' (and the worst of the CVEs counts).
    db.update_severities([str(NVD)])
    assert _severity(db) == ("HIGH", 7.4)


def test_a_severity_source_update_bumps_the_generation_and_is_incremental(tmp_path: Path) -> None:
    db = VulnDB(tmp_path / "db")
    [first] = db.update_severities([str(NVD)])
    assert not isinstance(first, SourceError) and first.added == 8 and db.generation == 1
    [again] = db.update_severities([str(tmp_path / "missing.json")])
    assert isinstance(again, SourceError)  # a missing file: recorded, the ratings kept
    assert db.cve_severity("CVE-2023-0286") == ("HIGH", 7.4)
    [same] = db.update_severities([str(NVD)])
    assert not isinstance(same, SourceError) and same.not_modified and db.generation == 1
    folder = tmp_path / "nvd"
    folder.mkdir()
    doc = json.loads(NVD.read_text())
    doc["vulnerabilities"] = doc["vulnerabilities"][:1]
    (folder / "nvdcve-2.0-2023.json").write_text(json.dumps(doc))
    [from_folder] = db.update_severities([str(folder)])
    assert not isinstance(from_folder, SourceError) and from_folder.added == 1 and db.generation == 2


@pytest.fixture
def rated(services: Services) -> Services:
    """The shared advisories, plus the NVD sample as the severity source (as `vulndb_severity_sources`)."""
    services.scans.severity_sources = [str(NVD)]
    return services


def test_severity_policies_fire_on_debian_and_alpine_packages(rated: Services) -> None:
    debian = image(rated, "team/debian", [BASE], "11")
    alpine = image(rated, "team/alpine", [ALPINE_IMAGE], "3.11")
    rated.scans.run()
    before = {f.advisory_id: f.severity for f in rated.scans.result(debian).findings}  # type: ignore[union-attr]
    assert before["DSA-5343-1"] == "UNKNOWN"  # no rating in Debian's records, none elsewhere in the database

    # The scheduled update reads the severity source too, and re-rates the stored images.
    result = rated.scans.update_vulndb([])
    assert result is not None and result.changed == 2
    findings = {f.advisory_id: f for f in rated.scans.result(debian).findings}  # type: ignore[union-attr]
    dsa = findings["DSA-5343-1"]
    assert (dsa.severity, dsa.score, dsa.package.ecosystem) == ("HIGH", 7.5, "deb")  # CVE-2023-0215, CVE-2022-4450
    alpine_findings = {f.advisory_id: f for f in rated.scans.result(alpine).findings}  # type: ignore[union-attr]
    assert (alpine_findings["ALPINE-CVE-2019-1551"].severity, alpine_findings["ALPINE-CVE-2019-1551"].score) == (
        "MEDIUM",
        5.3,
    )

    rated.projects.create("team")
    rated.projects.set_scan_policy("team", block_severity="high")
    rated.gates.forget()
    stored = rated.manifests.get("team/debian", "11")
    with pytest.raises(Denied) as refused:
        rated.gates.check_pull("team/debian", debian, stored.media_type, stored.content)
    assert "DSA-5343-1 (HIGH, libssl1.1" in refused.value.message
    # Alpine's findings are MEDIUM: "HIGH and above" lets it through, "MEDIUM and above" does not.
    apk = rated.manifests.get("team/alpine", "3.11")
    rated.gates.check_pull("team/alpine", alpine, apk.media_type, apk.content)
    rated.projects.set_scan_policy("team", block_severity="medium")
    rated.gates.forget()
    with pytest.raises(Denied, match=r"ALPINE-CVE-2019-15\d\d \(MEDIUM, libcrypto1.1"):
        rated.gates.check_pull("team/alpine", alpine, apk.media_type, apk.content)
