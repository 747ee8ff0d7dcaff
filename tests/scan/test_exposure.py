"""The exposure report over HTTP, on SQLite and PostgreSQL, from real scans: affected images (and
the index listing one), their tags now and in the window, every pull with who, how, from where and
when, counts, the caller's projects only, the CSV and JSON-lines exports, and bad parameters."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from dockyard.oci import mediatypes as mt
from dockyard.services.auth.permissions import Role
from tests.api.conftest import ADMIN, Registry, basic, registry, sha256
from tests.scan.images import layer_tar
from tests.scan.test_registry_scanning import BASE

__all__ = ["registry"]
URL = "/api/v1/exposure"
CVE = "CVE-2018-18074"  # requests 2.19.1 (PYSEC-2018-28)
EVE = basic("eve", "long-enough-pw")


def pull(reg: Registry, repo: str, ref: str, headers: dict[str, str], agent: str) -> None:
    r = reg.http.get(
        f"/v2/{repo}/manifests/{ref}",
        headers={**headers, "User-Agent": agent, "Accept": f"{mt.OCI_MANIFEST},{mt.OCI_INDEX}"},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def world(registry: Registry, site_packages: Path) -> dict[str, Any]:
    """team/app:1.0 (affected), team/app:multi (an index of it), team/app:clean; other/app:1.0, the
    same affected image in a project eve cannot read. Pulls by admin and eve, then 1.0 moves away."""
    svc = registry.services
    layer = layer_tar({"usr/lib/python3/dist-packages": site_packages})  # built once: tar bytes carry times
    body = registry.image("team/app", [BASE, layer])
    affected = sha256(body)
    assert registry.put_manifest("team/app", "1.0", body).status_code == 201
    clean_body = registry.image("team/app", [BASE])
    assert registry.put_manifest("team/app", "clean", clean_body).status_code == 201
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": affected, "size": len(body)}],
        }
    ).encode()
    assert registry.put_manifest("team/app", "multi", index, mt.OCI_INDEX).status_code == 201
    assert registry.image("other/app", [BASE, layer]) == body
    assert registry.put_manifest("other/app", "1.0", body).status_code == 201
    svc.scans.run()
    svc.users.create("eve", "long-enough-pw")
    svc.projects.set_member("team", "user", "eve", Role.GUEST)

    started = time.time()
    pull(registry, "team/app", "1.0", ADMIN, "skopeo/1.14")
    pull(registry, "team/app", affected, EVE, "containerd/1.7")
    pull(registry, "team/app", affected, EVE, "containerd/1.7")
    pull(registry, "team/app", "multi", EVE, "docker/25")
    pull(registry, "team/app", "clean", EVE, "docker/25")  # not affected
    pull(registry, "other/app", "1.0", ADMIN, "crane/0.19")
    moved = time.time()
    assert registry.put_manifest("team/app", "1.0", clean_body).status_code == 201  # 1.0 no longer affected
    after = time.time()
    svc.audit.flush()
    return {
        "affected": affected,
        "index": sha256(index),
        "clean": sha256(clean_body),
        "started": started,
        "moved": moved,
        "after": after,
    }


def test_by_advisory_as_admin(registry: Registry, world: dict[str, Any]) -> None:
    r = registry.http.get(URL, params={"advisory": CVE}, headers=ADMIN)
    assert r.status_code == 200, r.text
    report = r.json()
    digests = {d["digest"]: d for d in report["digests"]}
    assert set(digests) == {world["affected"], world["index"]}
    assert digests[world["affected"]]["kind"] == "image"
    assert digests[world["affected"]]["repositories"] == ["other/app", "team/app"]
    assert {m["package"] for m in digests[world["affected"]]["matches"]} == {"requests"}
    assert digests[world["index"]] | {} == {
        "digest": world["index"],
        "kind": "index",
        "children": [world["affected"]],
        "repositories": ["team/app"],
    }
    assert {(t["repository"], t["tag"]) for t in report["tags"]} == {("team/app", "multi"), ("other/app", "1.0")}
    history = {(h["repository"], h["tag"]): h for h in report["tag_history"]}
    assert history[("team/app", "1.0")]["digest"] == world["affected"]
    assert history[("team/app", "1.0")]["from"] <= world["started"]
    assert world["moved"] <= history[("team/app", "1.0")]["until"]
    assert history[("team/app", "multi")]["until"] is None and history[("other/app", "1.0")]["until"] is None

    pulls = report["pulls"]
    assert pulls["total"] == 5  # the clean image's pull is not one of them
    by_identity = {(c["actor"], c["actor_kind"], c["provider"]): c["count"] for c in pulls["by_identity"]}
    assert by_identity == {("admin", "user", "local"): 2, ("eve", "user", "local"): 3}
    assert [c["count"] for c in pulls["by_source"]] == [5] and pulls["by_source"][0]["source_ip"]
    events = pulls["events"]
    assert [e["user_agent"] for e in events] == [
        "crane/0.19", "docker/25", "containerd/1.7", "containerd/1.7", "skopeo/1.14",
    ]  # fmt: skip
    assert events[0]["repository"] == "other/app" and events[1]["digest"] == world["index"]
    assert events[-1]["reference"] == "1.0" and events[-1]["digest"] == world["affected"]
    assert events[2]["reference"] is None  # pulled by digest

    # Paged: the cursor leads to the older pulls, the counts stay whole.
    first = registry.http.get(URL, params={"advisory": CVE, "limit": 2}, headers=ADMIN).json()["pulls"]
    assert [e["id"] for e in first["events"]] == [e["id"] for e in events[:2]] and first["total"] == 5
    rest = registry.http.get(
        URL, params={"advisory": CVE, "limit": 10, "before": first["next_before"]}, headers=ADMIN
    ).json()["pulls"]
    assert [e["id"] for e in rest["events"]] == [e["id"] for e in events[2:]]


def test_by_package_and_version(registry: Registry, world: dict[str, Any]) -> None:
    report = registry.http.get(URL, params={"package": "requests", "version": "2.19.1"}, headers=ADMIN).json()
    assert {d["digest"] for d in report["digests"]} == {world["affected"], world["index"]}
    assert report["pulls"]["total"] == 5
    none = registry.http.get(URL, params={"package": "requests", "version": "0.0.1"}, headers=ADMIN).json()
    assert none["digests"] == [] and none["pulls"]["total"] == 0 and none["tags"] == []
    any_version = registry.http.get(URL, params={"package": "requests"}, headers=ADMIN).json()
    assert {d["digest"] for d in any_version["digests"]} == {world["affected"], world["index"]}


def test_time_window(registry: Registry, world: dict[str, Any]) -> None:
    later = registry.http.get(URL, params={"advisory": CVE, "since": world["after"]}, headers=ADMIN).json()
    assert later["pulls"]["total"] == 0 and later["pulls"]["events"] == []
    # 1.0 left the image before the window: only the tags still on it are in the window's history.
    assert {(h["repository"], h["tag"]) for h in later["tag_history"]} == {("team/app", "multi"), ("other/app", "1.0")}
    earlier = registry.http.get(URL, params={"advisory": CVE, "until": world["started"]}, headers=ADMIN).json()
    assert earlier["pulls"]["total"] == 0
    window = registry.http.get(
        URL, params={"advisory": CVE, "since": world["started"], "until": world["moved"]}, headers=ADMIN
    ).json()
    assert window["pulls"]["total"] == 5
    # 1.0 pointed at the image through that window: its interval ends when it moved, after the window.
    interval = next(h for h in window["tag_history"] if (h["repository"], h["tag"]) == ("team/app", "1.0"))
    assert interval["until"] is not None and interval["until"] >= world["moved"]


def test_only_the_callers_projects(registry: Registry, world: dict[str, Any]) -> None:
    report = registry.http.get(URL, params={"advisory": CVE}, headers=EVE).json()
    assert {d["digest"] for d in report["digests"]} == {world["affected"], world["index"]}
    assert next(d for d in report["digests"] if d["kind"] == "image")["repositories"] == ["team/app"]
    assert {t["repository"] for t in report["tags"]} == {"team/app"}
    assert {h["repository"] for h in report["tag_history"]} == {"team/app"}
    assert report["pulls"]["total"] == 4 and {e["repository"] for e in report["pulls"]["events"]} == {"team/app"}
    # Someone with no project sees nothing, and is not told why.
    registry.services.users.create("mallory", "long-enough-pw")
    nothing = registry.http.get(URL, params={"advisory": CVE}, headers=basic("mallory", "long-enough-pw"))
    assert nothing.status_code == 200
    assert nothing.json()["digests"] == [] and nothing.json()["pulls"]["total"] == 0
    exported = registry.http.get(
        URL, params={"advisory": CVE, "format": "csv"}, headers=basic("mallory", "long-enough-pw")
    )
    assert list(csv.reader(io.StringIO(exported.text)))[1:] == []
    assert registry.http.get(URL, params={"advisory": CVE}).status_code == 401


def test_exports(registry: Registry, world: dict[str, Any]) -> None:
    r = registry.http.get(URL, params={"advisory": CVE, "format": "csv"}, headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5 and {row["actor"] for row in rows} == {"admin", "eve"}
    assert rows[0]["user_agent"] == "skopeo/1.14"  # oldest first
    r = registry.http.get(URL, params={"advisory": CVE, "format": "jsonl"}, headers=EVE)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in r.text.splitlines()]
    kinds = [rec["record"] for rec in records]
    assert kinds.count("digest") == 2 and kinds.count("pull") == 4 and "tag" in kinds and "tag_history" in kinds
    assert all(rec["repository"] == "team/app" for rec in records if rec["record"] == "pull")


def test_bad_parameters(registry: Registry, world: dict[str, Any]) -> None:
    for params, status in (
        ({}, 400),
        ({"advisory": CVE, "package": "requests"}, 400),
        ({"version": "1"}, 400),
        ({"advisory": ""}, 422),
        ({"advisory": CVE, "since": 10, "until": 5}, 400),
        ({"advisory": CVE, "since": "yesterday"}, 422),
        ({"advisory": CVE, "since": -1}, 422),
        ({"advisory": CVE, "format": "xml"}, 422),
        ({"advisory": CVE, "limit": 0}, 422),
        ({"advisory": CVE, "before": "nope"}, 422),
        ({"advisory": "x" * 600}, 422),
    ):
        r = registry.http.get(URL, params=params, headers=ADMIN)
        assert r.status_code == status, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_a_bounded_report_cuts_tags_history_and_who_never_totals(registry: Registry, world: dict[str, Any]) -> None:
    """What the Security page asks for: a few tags and intervals (an image may carry 100,000 tags)
    and the identities and addresses with most pulls; a tag whose entries were not all read is left
    out rather than shown with a wrong interval; the total and the pull events are not cut."""
    from dockyard.services.exposure import ExposureQuery

    q = ExposureQuery(CVE, None, None, None, None)
    whole = registry.services.exposure.report(q, None)
    cut = registry.services.exposure.report(q, None, detail=1)
    assert "truncated" not in whole
    assert cut["truncated"] == {"tags": True, "tag_history": True, "identities": True, "sources": False}
    assert len(cut["tags"]) == 1 and cut["tags"][0] in whole["tags"]
    assert cut["tag_history"] == [h for h in whole["tag_history"] if h["repository"] == "other/app"]
    assert cut["digests"] == whole["digests"]
    assert cut["pulls"] == {**whole["pulls"], "by_identity": whole["pulls"]["by_identity"][:1]}
    assert len(whole["pulls"]["by_identity"]) == 2
    roomy = registry.services.exposure.report(q, None, detail=50)
    assert roomy["truncated"] == {"tags": False, "tag_history": False, "identities": False, "sources": False}
    assert roomy["tags"] == whole["tags"] and roomy["tag_history"] == whole["tag_history"]
