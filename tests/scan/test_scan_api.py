"""The scanning API over HTTP (the real ASGI app): reports, on-demand scans, SBOMs, registry-wide
questions limited to what the caller may see, and pulls refused by a project's policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import ADMIN, Registry, basic, registry, sha256
from tests.scan.images import layer_tar
from tests.scan.test_registry_scanning import BASE

__all__ = ["registry"]  # the in-process registry fixture, over these services


@pytest.fixture
def pushed(registry: Registry, site_packages: Path) -> str:
    body = registry.image("team/app", [BASE, layer_tar({"usr/lib/python3/dist-packages": site_packages})])
    assert registry.put_manifest("team/app", "1.0", body).status_code == 201
    return sha256(body)


def test_report_sbom_and_on_demand_scan(registry: Registry, pushed: str) -> None:
    url = "/api/v1/repositories/team/app/manifests/1.0/scan"
    queued = registry.http.get(url, headers=ADMIN).json()
    assert queued["digest"] == pushed and queued["images"][0]["status"] == "queued"
    registry.services.scans.run()
    report = registry.http.get(url, headers=ADMIN).json()
    image = report["images"][0]
    assert image["status"] == "done" and image["distro"] == "debian-11" and image["packages"] > 5
    ids = {f["advisory_id"] for f in image["findings"]}
    assert {"PYSEC-2018-28", "DSA-5343-1"} <= ids
    req = next(f for f in image["findings"] if f["advisory_id"] == "PYSEC-2018-28")
    assert req["fixed_version"] == "2.20.0" and "CVE-2018-18074" in req["aliases"]
    assert sum(image["summary"].values()) == len(image["findings"])

    sbom = registry.http.get(url.replace("/scan", "/sbom"), headers=ADMIN)
    assert sbom.status_code == 200 and sbom.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    purls = {c.get("purl") for c in sbom.json()["components"]}
    assert "pkg:pypi/requests@2.19.1" in purls and len(sbom.json()["components"]) == image["packages"]
    spdx = registry.http.get(url.replace("/scan", "/sbom"), params={"format": "spdx"}, headers=ADMIN).json()
    assert spdx["spdxVersion"] == "SPDX-2.3" and len(spdx["packages"]) >= image["packages"]

    # Attached as a referrer artifact: discoverable through the distribution API, as oras does.
    attached = registry.http.post(url.replace("/scan", "/sbom/attach"), headers=ADMIN)
    assert attached.status_code == 201, attached.text
    index = registry.request("GET", f"/v2/team/app/referrers/{pushed}").json()
    refs = [m for m in index["manifests"] if m["artifactType"] == "application/vnd.cyclonedx+json"]
    assert [m["digest"] for m in refs] == [attached.json()["digest"]]
    artifact = registry.request("GET", f"/v2/team/app/manifests/{refs[0]['digest']}").json()
    assert artifact["subject"]["digest"] == pushed
    stored = registry.request("GET", f"/v2/team/app/blobs/{artifact['layers'][0]['digest']}").json()
    assert {c.get("purl") for c in stored["components"]} == purls

    assert registry.http.post(url, headers=ADMIN).status_code == 202
    assert registry.http.get(url, headers=ADMIN).json()["images"][0]["status"] == "queued"
    assert registry.services.scans.run().scanned == 1
    missing = registry.http.get("/api/v1/repositories/team/app/manifests/nope/scan", headers=ADMIN)
    assert missing.status_code == 404


def test_registry_wide_questions_show_only_what_the_caller_may_pull(registry: Registry, pushed: str) -> None:
    registry.services.scans.run()
    hits = registry.http.get("/api/v1/vulnerabilities/CVE-2018-18074/images", headers=ADMIN).json()
    assert [(h["digest"], h["locations"]) for h in hits] == [
        (pushed, [{"repository": "team/app", "tags": ["1.0"], "more_tags": False, "quarantined": False}])
    ]
    found = registry.http.get(
        "/api/v1/packages/images", params={"name": "requests", "version": "2.19.1"}, headers=ADMIN
    )
    assert [h["digest"] for h in found.json()] == [pushed]

    assert registry.http.post("/api/v1/users", json={"username": "eve", "password": "long-enough"}, headers=ADMIN)
    eve = basic("eve", "long-enough")
    assert registry.http.get("/api/v1/vulnerabilities/CVE-2018-18074/images", headers=eve).json() == []
    assert registry.http.get("/api/v1/vulnerabilities/CVE-2018-18074/images").status_code == 401


def test_pull_refused_by_policy_with_the_findings_named(registry: Registry, pushed: str) -> None:
    policy = "/api/v1/projects/team/scan-policy"
    r = registry.http.patch(policy, json={"block_unscanned": True}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["block_unscanned"] is True
    refused = registry.request("GET", "/v2/team/app/manifests/1.0")
    assert refused.status_code == 403
    assert (
        refused.json()["errors"][0]["code"] == "DENIED" and "not been scanned" in refused.json()["errors"][0]["message"]
    )

    registry.services.scans.run()
    registry.http.patch(policy, json={"block_unscanned": False, "block_severity": "unknown"}, headers=ADMIN)
    refused = registry.request("GET", "/v2/team/app/manifests/1.0")
    assert refused.status_code == 403
    message = refused.json()["errors"][0]["message"]
    # The most severe findings are named first; the count covers them all.
    assert "findings at or above UNKNOWN: PYSEC-2023-192 (HIGH, urllib3 1.24.1)" in message and "more" in message
    assert registry.request("HEAD", "/v2/team/app/manifests/1.0").status_code == 200  # clients may still look

    bad = registry.http.patch(policy, json={"block_severity": "severe"}, headers=ADMIN)
    assert bad.status_code == 422
    everything = [f["advisory_id"] for f in registry.http.get(
        "/api/v1/repositories/team/app/manifests/1.0/scan", headers=ADMIN
    ).json()["images"][0]["findings"]]  # fmt: skip
    registry.http.patch(policy, json={"vulnerability_allowlist": everything}, headers=ADMIN)
    allowed = registry.request("GET", "/v2/team/app/manifests/1.0")
    assert allowed.status_code == 200 and json.loads(allowed.content)["schemaVersion"] == 2

    # Licences: reported per image against the project's deny-list, enforced only when asked.
    registry.http.patch(policy, json={"licence_denylist": ["MIT", "GPL-3.0-only"]}, headers=ADMIN)
    url = "/api/v1/repositories/team/app/manifests/1.0/scan"
    image = registry.http.get(url, headers=ADMIN).json()["images"][0]
    assert image["denied_licences"] == ["MIT"]  # urllib3 and idna declare MIT; nothing here is GPL-3.0
    assert registry.request("GET", "/v2/team/app/manifests/1.0").status_code == 200
    registry.http.patch(policy, json={"block_denied_licences": True}, headers=ADMIN)
    refused = registry.request("GET", "/v2/team/app/manifests/1.0")
    assert refused.status_code == 403 and "denied licences MIT" in refused.json()["errors"][0]["message"]
