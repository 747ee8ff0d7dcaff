"""Reports: the terminal table, plain JSON, CycloneDX 1.6 (schema-validated) and SPDX 2.3 (spdx-tools-validated)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from dockyard.scan.model import DEB, GEM, NPM, PYPI, Distro, Finding, Package, ScanResult
from dockyard.scan.report import package_refs, render_cyclonedx, render_json, render_spdx, render_table
from tests.conftest import missing

BOOKWORM = Distro("debian", "12")
DPKG_STATUS = "var/lib/dpkg/status"

LIBSSL = Package(
    DEB, "libssl3", "3.0.11-1~deb12u2", DPKG_STATUS,
    "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
    source_name="openssl", source_version="3.0.11-1~deb12u2", licence="Apache-2.0", distro=BOOKWORM,
)  # fmt: skip
LOGIN = Package(
    DEB, "login", "1:4.13+dfsg1-1+b1", DPKG_STATUS,
    "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bb1?arch=amd64&distro=debian-12",
    source_name="shadow", source_version="1:4.13+dfsg1-1", licence="GPL-2+ and BSD-like", distro=BOOKWORM,
)  # fmt: skip
TZDATA = Package(
    DEB,
    "tzdata",
    "2024a-0+deb12u1",
    DPKG_STATUS,
    "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
    distro=BOOKWORM,
)  # no licence recorded
REQUESTS = Package(
    PYPI, "requests", "2.19.1", "usr/local/lib/python3.11/site-packages/requests-2.19.1.dist-info/METADATA",
    "pkg:pypi/requests@2.19.1", licence="Apache 2.0",  # old metadata: free text, not SPDX
)  # fmt: skip
URLLIB3 = Package(
    PYPI, "urllib3", "1.24.1", "usr/local/lib/python3.11/site-packages/urllib3-1.24.1.dist-info/METADATA",
    "pkg:pypi/urllib3@1.24.1", licence="MIT",
)  # fmt: skip
LODASH = Package(
    NPM, "lodash", "4.17.15", "app/node_modules/lodash/package.json", "pkg:npm/lodash@4.17.15", licence="MIT"
)
# The same release vendored a second time: a distinct component with its own ref.
LODASH_VENDORED = Package(
    NPM, "lodash", "4.17.15", "app/node_modules/webpack/node_modules/lodash/package.json", "pkg:npm/lodash@4.17.15",
    licence="MIT",
)  # fmt: skip
MINIMIST = Package(
    NPM, "minimist", "1.2.0", "app/node_modules/minimist/package.json", "pkg:npm/minimist@1.2.0", licence="MIT"
)
PACKAGES = [LIBSSL, LOGIN, TZDATA, REQUESTS, URLLIB3, LODASH, LODASH_VENDORED, MINIMIST]

FINDINGS = [
    Finding(
        "PYSEC-2018-28", ("CVE-2018-18074", "GHSA-x84v-xcm2-53pg"), REQUESTS, "2.19.1", "2.20.0", "HIGH", 7.5,
        "https://github.com/psf/requests/issues/4716",
        "Authorization header leaked on an HTTPS to HTTP redirect",
    ),
    Finding(
        "GHSA-p6mc-m468-83gw", ("CVE-2020-8203",), LODASH, "4.17.15", "4.17.19", "HIGH", 7.4,
        "https://github.com/advisories/GHSA-p6mc-m468-83gw", "Prototype Pollution in lodash",
    ),
    Finding(
        "GHSA-p6mc-m468-83gw", ("CVE-2020-8203",), LODASH_VENDORED, "4.17.15", "4.17.19", "HIGH", 7.4,
        "https://github.com/advisories/GHSA-p6mc-m468-83gw", "Prototype Pollution in lodash",
    ),
    Finding(
        "GHSA-xvch-5gv4-984h", ("CVE-2021-44906",), MINIMIST, "1.2.0", "1.2.6", "CRITICAL", 9.8,
        "https://github.com/advisories/GHSA-xvch-5gv4-984h", "Prototype Pollution in minimist",
    ),
    Finding(
        "CVE-2024-0727", (), LIBSSL, "3.0.11-1~deb12u2", "3.0.13-1~deb12u1", "MEDIUM", 5.5,
        "https://security-tracker.debian.org/tracker/CVE-2024-0727", "NULL dereference on malformed PKCS12 files",
    ),
    Finding(
        "CVE-2007-6755", (), LIBSSL, "3.0.11-1~deb12u2", None, "UNKNOWN", None,
        "https://security-tracker.debian.org/tracker/CVE-2007-6755", "Dual_EC_DRBG",
    ),
]  # fmt: skip

SEVERITY_ORDER = ["GHSA-xvch-5gv4-984h", "GHSA-p6mc-m468-83gw", "PYSEC-2018-28", "CVE-2024-0727", "CVE-2007-6755"]


@pytest.fixture
def result() -> ScanResult:
    # Inventory order is not sorted: reports must not depend on it.
    return ScanResult(list(reversed(PACKAGES)), list(FINDINGS), BOOKWORM)


def _validate_cyclonedx(text: str, version: SchemaVersion = SchemaVersion.V1_6) -> dict[str, Any]:
    errors = JsonStrictValidator(version).validate_str(text, all_errors=True)
    assert errors is None, [str(e) for e in errors]
    doc: dict[str, Any] = json.loads(text)
    return doc


def _props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


# -- CycloneDX -------------------------------------------------------------------------------------


def test_cyclonedx_validates_and_describes_components_and_vulnerabilities(result: ScanResult) -> None:
    doc = _validate_cyclonedx(render_cyclonedx(result, name="library/app", version="sha256:" + "ab" * 32))
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["name"] == "library/app"
    assert doc["metadata"]["component"]["type"] == "container"
    assert [t["name"] for t in doc["metadata"]["tools"]["components"]] == ["dockyard"]

    components = doc["components"]
    refs = package_refs(PACKAGES)
    assert len(components) == len(PACKAGES)
    assert len({c["bom-ref"] for c in components}) == len(PACKAGES)
    by_ref = {c["bom-ref"]: c for c in components}
    for p in PACKAGES:
        c = by_ref[refs[p]]
        assert (c["name"], c["version"], c["purl"]) == (p.name, p.version, p.purl)
        assert _props(c)["dockyard:path"] == p.path
    assert _props(by_ref[refs[LIBSSL]])["dockyard:source-name"] == "openssl"

    # Licences: an SPDX id, free text as a named licence, none at all.
    assert by_ref[refs[URLLIB3]]["licenses"] == [{"license": {"id": "MIT", "acknowledgement": "declared"}}]
    assert by_ref[refs[LOGIN]]["licenses"] == [
        {"license": {"name": "GPL-2+ and BSD-like", "acknowledgement": "declared"}}
    ]
    assert by_ref[refs[REQUESTS]]["licenses"][0]["license"]["name"] == "Apache 2.0"
    assert "licenses" not in by_ref[refs[TZDATA]]

    # The image depends on every package, so the dependency graph is complete.
    image_deps = next(d for d in doc["dependencies"] if d["ref"] == doc["metadata"]["component"]["bom-ref"])
    assert sorted(image_deps["dependsOn"]) == sorted(refs.values())

    vulns = {v["id"]: v for v in doc["vulnerabilities"]}
    assert sorted(vulns) == sorted(SEVERITY_ORDER)  # one per advisory, even when it hits two packages

    lodash = vulns["GHSA-p6mc-m468-83gw"]
    assert sorted(a["ref"] for a in lodash["affects"]) == sorted([refs[LODASH], refs[LODASH_VENDORED]])
    assert lodash["affects"][0]["versions"] == [
        {"version": "4.17.15", "status": "affected"},
        {"version": "4.17.19", "status": "unaffected"},
    ]
    assert lodash["references"] == [
        {"id": "CVE-2020-8203", "source": {"name": "NVD", "url": "https://nvd.nist.gov/vuln/detail/CVE-2020-8203"}}
    ]
    assert lodash["recommendation"] == "Upgrade lodash to 4.17.19 or later."

    requests = vulns["PYSEC-2018-28"]
    assert [a["ref"] for a in requests["affects"]] == [refs[REQUESTS]]
    assert {r["id"] for r in requests["references"]} == {"CVE-2018-18074", "GHSA-x84v-xcm2-53pg"}
    assert requests["source"] == {"name": "github.com", "url": "https://github.com/psf/requests/issues/4716"}
    assert requests["ratings"][0]["severity"] == "high"
    assert requests["ratings"][0]["score"] == 7.5
    assert requests["ratings"][0]["method"] == "CVSSv3"
    assert requests["description"].startswith("Authorization header")

    assert vulns["GHSA-xvch-5gv4-984h"]["ratings"][0]["severity"] == "critical"
    unfixed = vulns["CVE-2007-6755"]
    assert unfixed["ratings"] == [unfixed["ratings"][0]] and unfixed["ratings"][0]["severity"] == "unknown"
    assert "score" not in unfixed["ratings"][0] and "recommendation" not in unfixed
    assert unfixed["affects"][0]["versions"] == [{"version": "3.0.11-1~deb12u2", "status": "affected"}]
    assert "references" not in unfixed  # a CVE with no other ids


def test_cyclonedx_inventory_only_has_no_vulnerabilities(result: ScanResult) -> None:
    doc = _validate_cyclonedx(render_cyclonedx(result, inventory_only=True, name="library/app"))
    assert not doc.get("vulnerabilities")
    assert {c["purl"] for c in doc["components"]} == {p.purl for p in PACKAGES}


def test_cyclonedx_without_image_name_and_as_1_5(result: ScanResult) -> None:
    doc = _validate_cyclonedx(render_cyclonedx(result))
    assert "component" not in doc["metadata"]
    doc15 = _validate_cyclonedx(render_cyclonedx(result, schema_version=SchemaVersion.V1_5), SchemaVersion.V1_5)
    assert doc15["specVersion"] == "1.5" and len(doc15["vulnerabilities"]) == len(SEVERITY_ORDER)


def test_cyclonedx_includes_packages_only_findings_name() -> None:
    # A finding whose package the inventory lacks must still point at a component that exists.
    doc = _validate_cyclonedx(render_cyclonedx(ScanResult([LODASH], [FINDINGS[0]], None), name="x"))
    refs = {c["bom-ref"] for c in doc["components"]}
    assert {a["ref"] for v in doc["vulnerabilities"] for a in v["affects"]} <= refs
    assert len(refs) == 2


# -- SPDX ------------------------------------------------------------------------------------------


def _validate_spdx(doc: dict[str, Any], tmp_path: Path) -> None:
    try:
        from spdx_tools.spdx.parser.parse_anything import parse_file
        from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    except ImportError:
        missing("spdx-tools is not installed (pip install spdx-tools)")
    path = tmp_path / "image.spdx.json"
    path.write_text(json.dumps(doc))
    messages = validate_full_spdx_document(parse_file(str(path)), spdx_version="SPDX-2.3")
    assert [m.validation_message for m in messages] == []


def test_spdx_validates_with_one_package_per_inventory_package(result: ScanResult, tmp_path: Path) -> None:
    created = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    doc = render_spdx(result, name="library/app", namespace_seed="library/app@sha256:abc", created=created)
    _validate_spdx(doc, tmp_path)

    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"] == {"created": "2024-05-01T12:00:00Z", "creators": ["Tool: dockyard-0.1.0"]}
    packages = doc["packages"]
    assert len(packages) == len(PACKAGES) + 1
    ids = [p["SPDXID"] for p in packages]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", i) for i in ids)

    [describes] = [r for r in doc["relationships"] if r["relationshipType"] == "DESCRIBES"]
    root = next(p for p in packages if p["SPDXID"] == describes["relatedSpdxElement"])
    assert root["name"] == "library/app" and root["primaryPackagePurpose"] == "CONTAINER"
    contained = {r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert contained == set(ids) - {root["SPDXID"]}

    by_purl = {p["externalRefs"][0]["referenceLocator"]: p for p in packages if p is not root}
    assert sorted(by_purl) == sorted({p.purl for p in PACKAGES})
    assert all(p["externalRefs"][0]["referenceCategory"] == "PACKAGE-MANAGER" for p in by_purl.values())
    assert by_purl[URLLIB3.purl]["licenseDeclared"] == "MIT"
    assert by_purl[TZDATA.purl]["licenseDeclared"] == "NOASSERTION"
    login_licence = by_purl[LOGIN.purl]["licenseDeclared"]
    assert login_licence.startswith("LicenseRef-")
    extracted = {e["licenseId"]: e["extractedText"] for e in doc["hasExtractedLicensingInfos"]}
    assert extracted[login_licence] == "GPL-2+ and BSD-like"
    assert extracted[by_purl[REQUESTS.purl]["licenseDeclared"]] == "Apache 2.0"
    assert by_purl[LIBSSL.purl]["sourceInfo"] == "built from source package openssl 3.0.11-1~deb12u2"


def test_licence_expressions_and_references(tmp_path: Path) -> None:
    dual = Package(PYPI, "cryptography", "42.0.5", "x/METADATA", "pkg:pypi/cryptography@42.0.5",
                   licence="Apache-2.0 OR BSD-3-Clause")  # fmt: skip
    own = Package(NPM, "internal", "1.0.0", "app/node_modules/internal/package.json", "pkg:npm/internal@1.0.0",
                  licence="LicenseRef-Proprietary")  # fmt: skip
    lower = Package(NPM, "tiny", "1.0.0", "app/node_modules/tiny/package.json", "pkg:npm/tiny@1.0.0", licence="mit")
    result = ScanResult([dual, own, lower])

    cdx = {c["name"]: c["licenses"] for c in _validate_cyclonedx(render_cyclonedx(result))["components"]}
    assert cdx["cryptography"] == [{"expression": "Apache-2.0 OR BSD-3-Clause", "acknowledgement": "declared"}]
    assert cdx["tiny"] == [{"license": {"id": "MIT", "acknowledgement": "declared"}}]
    assert cdx["internal"] == [{"license": {"name": "LicenseRef-Proprietary", "acknowledgement": "declared"}}]

    doc = render_spdx(result, name="app", namespace_seed="app")
    _validate_spdx(doc, tmp_path)
    spdx = {p["name"]: p["licenseDeclared"] for p in doc["packages"]}
    assert spdx["cryptography"] == "Apache-2.0 OR BSD-3-Clause"
    assert spdx["tiny"] == "MIT"
    assert spdx["internal"] == "LicenseRef-Proprietary"
    assert [e["licenseId"] for e in doc["hasExtractedLicensingInfos"]] == ["LicenseRef-Proprietary"]


def test_spdx_namespace_is_deterministic(result: ScanResult) -> None:
    one = render_spdx(result, name="library/app", namespace_seed="seed-1")
    again = render_spdx(ScanResult(PACKAGES, [], BOOKWORM), name="library/app", namespace_seed="seed-1")
    other = render_spdx(result, name="library/app", namespace_seed="seed-2")
    assert one["documentNamespace"] == again["documentNamespace"] != other["documentNamespace"]
    assert one["documentNamespace"].startswith("https://")


def test_spdx_of_an_empty_image_validates(tmp_path: Path) -> None:
    doc = render_spdx(ScanResult(), name="scratch", namespace_seed="scratch")
    _validate_spdx(doc, tmp_path)
    assert len(doc["packages"]) == 1


# -- JSON ------------------------------------------------------------------------------------------


def test_json_round_trips_and_findings_point_at_packages(result: ScanResult) -> None:
    doc = render_json(result)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["distro"] == {"id": "debian", "version_id": "12"}
    assert doc["summary"] == {
        "packages": len(PACKAGES),
        "findings": len(FINDINGS),
        "severities": {"CRITICAL": 1, "HIGH": 3, "MEDIUM": 1, "LOW": 0, "UNKNOWN": 1},
    }
    refs = [p["ref"] for p in doc["packages"]]
    assert len(set(refs)) == len(PACKAGES)
    assert all(f["package"] in refs for f in doc["findings"])
    assert list(dict.fromkeys(f["advisory_id"] for f in doc["findings"])) == SEVERITY_ORDER

    libssl = next(p for p in doc["packages"] if p["name"] == "libssl3")
    assert libssl == {
        "ref": package_refs([LIBSSL])[LIBSSL],
        "ecosystem": "deb",
        "name": "libssl3",
        "version": "3.0.11-1~deb12u2",
        "path": DPKG_STATUS,
        "purl": LIBSSL.purl,
        "source_name": "openssl",
        "source_version": "3.0.11-1~deb12u2",
        "licence": "Apache-2.0",
        "distro": {"id": "debian", "version_id": "12"},
    }
    pysec = next(f for f in doc["findings"] if f["advisory_id"] == "PYSEC-2018-28")
    assert pysec["aliases"] == ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]
    assert (pysec["fixed_version"], pysec["severity"], pysec["score"]) == ("2.20.0", "HIGH", 7.5)
    # Stable: the inventory's order does not change the document.
    assert render_json(ScanResult(PACKAGES, list(reversed(FINDINGS)), BOOKWORM)) == doc


def test_json_inventory_only_has_no_findings(result: ScanResult) -> None:
    doc = render_json(result, inventory_only=True)
    assert "findings" not in doc
    assert doc["summary"] == {"packages": len(PACKAGES)}


def test_package_refs_are_unique_for_same_purl_and_path() -> None:
    relicensed = Package(NPM, "lodash", "4.17.15", LODASH.path, LODASH.purl, licence="CC0-1.0")
    refs = package_refs([LODASH, relicensed, LODASH])
    base = "pkg:npm/lodash@4.17.15#app/node_modules/lodash/package.json"
    assert len(refs) == 2 and set(refs.values()) == {base, base + "~2"}
    assert package_refs([relicensed, LODASH]) == refs  # whatever the input order


# -- table -----------------------------------------------------------------------------------------


def test_table_lists_findings_most_severe_first(result: ScanResult) -> None:
    text = render_table(result, console_width=200)
    header = text.splitlines()[0]
    assert "debian 12" in header and "CRITICAL: 1" in header and "HIGH: 3" in header
    positions = [text.index(a) for a in SEVERITY_ORDER]
    assert positions == sorted(positions)
    assert "PYSEC-2018-28 (CVE-2018-18074)" in text
    assert "not fixed" in text
    assert "https://security-tracker.debian.org/tracker/CVE-2007-6755" in text
    assert "\x1b[" not in text  # no colour codes in the string


def test_table_folds_rather_than_truncates_when_narrow(result: ScanResult) -> None:
    text = render_table(result, console_width=60)
    assert "…" not in text
    assert all(len(line) <= 60 for line in text.splitlines()[1:])


def test_table_inventory_only(result: ScanResult) -> None:
    text = render_table(result, console_width=200, inventory_only=True)
    assert "GHSA-" not in text and "Severity" not in text
    for p in PACKAGES:
        assert p.path in text
    assert "GPL-2+ and BSD-like" in text


def test_table_shows_brackets_verbatim() -> None:
    odd = Package(GEM, "rack", "2.2.8", "usr/lib/ruby/gems/specifications/rack-2.2.8.gemspec", "pkg:gem/rack@2.2.8",
                  licence="[bold]MIT")  # fmt: skip
    assert "[bold]MIT" in render_table(ScanResult([odd]), console_width=150, inventory_only=True)


def test_table_without_findings() -> None:
    text = render_table(ScanResult([LODASH], [], None), console_width=100)
    assert "No known vulnerabilities." in text and "unknown distribution" in text
