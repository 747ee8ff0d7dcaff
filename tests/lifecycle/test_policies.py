"""Tag immutability, quotas, retention, scrub and reconcile through the real HTTP API and services."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.services.auth.permissions import Role
from dockyard.services.lifecycle.reconcile import Reconciler
from dockyard.services.lifecycle.retention import RetentionPolicy
from dockyard.wiring import build_services, prepare
from tests.api.conftest import ADMIN, Registry, basic, make_settings, sha256


@pytest.fixture
def reg(tmp_path: Path, database: Database) -> Iterator[Registry]:
    settings = make_settings(tmp_path, database).model_copy(
        update={"gc_grace_seconds": 0.0, "gc_interval_seconds": 0, "tag_history_keep_days": 0.0}
    )
    svc = build_services(settings, db=database)
    prepare(svc)
    svc.projects.create("team", creator="admin")
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        yield Registry(client, svc)


def push(reg: Registry, tag: str, layer: bytes, repo: str = "team/app", headers: dict[str, str] | None = None) -> str:
    body = reg.image(repo, [layer])
    r = reg.http.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={**(headers or ADMIN), "Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"]


# --- immutability ----------------------------------------------------------------------------------
def test_immutable_tags_cannot_be_moved_or_deleted(reg: Registry) -> None:
    reg.services.users.create("maint", "maint-password")
    reg.services.projects.set_member("team", "user", "maint", Role.MAINTAINER)
    maint = basic("maint", "maint-password")
    r = reg.http.post("/api/v1/projects/team/immutable-tags", json={"pattern": "v*"}, headers=maint)
    assert r.status_code == 201, r.text
    first = push(reg, "v1.0", b"one")
    push(reg, "v1.0", b"one")  # re-pushing the same content is not a move
    body = reg.image("team/app", [b"two"])
    r = reg.put_manifest("team/app", "v1.0", body)
    assert r.status_code == 403 and "DENIED" in r.text and "rule 'v*'" in r.text, r.text
    for ref in ("v1.0", first):
        r = reg.request("DELETE", f"/v2/team/app/manifests/{ref}")
        assert r.status_code == 403 and "immutable" in r.text, r.text
    assert reg.request("GET", "/v2/team/app/manifests/v1.0").headers["docker-content-digest"] == first
    push(reg, "latest", b"two")  # other tags are unaffected
    push(reg, "latest", b"three")
    # Only a system administrator may remove the rule; then the tag moves.
    assert reg.http.delete("/api/v1/projects/team/immutable-tags/v*", headers=maint).status_code == 403
    assert reg.http.delete("/api/v1/projects/team/immutable-tags/v*", headers=ADMIN).status_code == 204
    assert reg.put_manifest("team/app", "v1.0", body).status_code == 201
    events = reg.http.get("/api/v1/audit", params={"project": "team", "action": "tag-rule.add"}, headers=ADMIN).json()
    assert events["events"][0]["actor"] == "maint"


# --- quotas ----------------------------------------------------------------------------------------
def test_quota_refuses_the_push_that_would_exceed_it_and_leaves_nothing(reg: Registry) -> None:
    r = reg.http.put("/api/v1/projects/team/quota", json={"quota_bytes": 5000}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["quota_bytes"] == 5000
    push(reg, "v1", b"a" * 3000)
    used = reg.http.get("/api/v1/projects/team", headers=ADMIN).json()["used_bytes"]
    assert 3000 < used < 5000
    metrics = reg.http.get("/metrics", headers=ADMIN).text
    assert f'dockyard_project_used_bytes{{project="team"}} {float(used)}' in metrics
    assert 'dockyard_project_quota_bytes{project="team"} 5000.0' in metrics
    big = b"b" * 3000
    r = reg.request("POST", "/v2/team/app/blobs/uploads/", params={"digest": sha256(big)}, content=big)
    assert r.status_code == 403 and "quota exceeded" in r.text and "5000" in r.text, r.text
    assert reg.services.store.stat(sha256(big)) is None  # no bytes left behind
    with reg.services.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.upload_sessions)).scalar() == 0
    # A blob the project already holds costs nothing, even in another repository.
    layer = json.loads(reg.request("GET", "/v2/team/app/manifests/v1", headers={"Accept": mt.OCI_MANIFEST}).content)
    digest = layer["layers"][0]["digest"]
    r = reg.request("POST", "/v2/team/other/blobs/uploads/", params={"mount": digest, "from": "team/app"})
    assert r.status_code == 201, r.text
    assert reg.http.get("/api/v1/projects/team", headers=ADMIN).json()["used_bytes"] == used
    repos = reg.http.get("/api/v1/projects/team/repositories", headers=ADMIN).json()
    assert {x["name"]: x["used_bytes"] for x in repos}["team/other"] == 3000
    # Deleting and collecting frees the space.
    reg.request("DELETE", "/v2/team/app/manifests/v1")
    reg.request("DELETE", f"/v2/team/other/blobs/{digest}")
    reg.services.collector.run()
    assert reg.http.get("/api/v1/projects/team", headers=ADMIN).json()["used_bytes"] == 0
    assert (
        reg.request("POST", "/v2/team/app/blobs/uploads/", params={"digest": sha256(big)}, content=big).status_code
        == 201
    )
    # Only system administrators set quotas.
    reg.services.users.create("owner", "owner-password")
    reg.services.projects.set_member("team", "user", "owner", Role.ADMIN)
    r = reg.http.put(
        "/api/v1/projects/team/quota", json={"quota_bytes": None}, headers=basic("owner", "owner-password")
    )
    assert r.status_code == 403


# --- retention -------------------------------------------------------------------------------------
def test_retention_dry_run_lists_and_run_removes_what_no_rule_keeps(reg: Registry) -> None:
    for i in range(5):
        push(reg, f"build-{i}", f"b{i}".encode())
        time.sleep(0.01)  # distinct push times
    push(reg, "release-1", b"r1")
    with reg.services.db.write() as conn:  # build-0 was pushed long ago, but pulled yesterday
        conn.exec_driver_sql("UPDATE tags SET updated_at = updated_at - 864000 WHERE name LIKE 'build-%%'")
    reg.request("GET", "/v2/team/app/manifests/build-0")
    policy = {"keep_last": 2, "keep_days": 3, "keep_patterns": ["release-*"], "remove_untagged": True}
    assert reg.http.put("/api/v1/projects/team/retention", json=policy, headers=ADMIN).status_code == 200
    plan = reg.http.post("/api/v1/projects/team/retention/run", params={"dry_run": True}, headers=ADMIN).json()
    # Kept: release-1 (pattern, and most recent), build-4 (second most recent), build-0 (pulled recently).
    assert sorted(x["tag"] for x in plan) == ["build-1", "build-2", "build-3"]
    tags = reg.request("GET", "/v2/team/app/tags/list").json()["tags"]
    assert len(tags) == 6  # the dry run removed nothing
    done = reg.http.post("/api/v1/projects/team/retention/run", params={"dry_run": False}, headers=ADMIN).json()
    assert sorted(x["tag"] for x in done) == ["build-1", "build-2", "build-3"]
    assert sorted(reg.request("GET", "/v2/team/app/tags/list").json()["tags"]) == ["build-0", "build-4", "release-1"]
    events = reg.http.get("/api/v1/audit", params={"actor": "system:retention", "action": "delete"}, headers=ADMIN)
    assert sorted(e["reference"] for e in events.json()["events"]) == ["build-1", "build-2", "build-3"]


def test_retention_never_removes_immutable_tags_and_a_policy_without_keep_rules_keeps_all(reg: Registry) -> None:
    push(reg, "v1", b"x")
    push(reg, "tmp", b"y")
    assert reg.services.retention.plan("team", RetentionPolicy()) == []
    reg.services.tag_rules.add("team", "v*")
    removed = reg.services.retention.run("team", policy=RetentionPolicy(keep_last=0))
    assert [r.tag for r in removed] == ["tmp"]


# --- scrub and reconcile ---------------------------------------------------------------------------
def test_scrub_reports_altered_and_missing_blobs(reg: Registry) -> None:
    push(reg, "v1", b"good" * 100)
    layers = [reg.push_blob("team/app", f"blob-{i}".encode() * 50) for i in range(3)]
    clean = reg.services.scrubber.run()
    assert clean.missing == [] and clean.corrupt == [] and clean.blobs >= 5
    path = reg.services.store.local_path(layers[0])
    assert path is not None
    with open(path, "r+b") as f:  # bit rot
        f.write(b"X")
    os.unlink(str(reg.services.store.local_path(layers[1])))
    report = reg.services.scrubber.run(rate_bytes_per_second=50_000_000)
    assert report.corrupt == [layers[0]] and report.missing == [layers[1]]
    events = reg.http.get("/api/v1/audit", params={"action": "storage.scrub"}, headers=ADMIN).json()["events"]
    assert {(e["digest"], e["detail"]["problem"], e["result"]) for e in events} == {
        (layers[0], "digest mismatch", "failure"),
        (layers[1], "missing", "failure"),
    }


def test_scrub_rate_limit_is_honoured(reg: Registry) -> None:
    for i in range(4):
        reg.push_blob("team/app", bytes([i]) * 100_000)
    report = reg.services.scrubber.run(rate_bytes_per_second=1_000_000)
    assert report.bytes >= 400_000 and report.seconds >= report.bytes / 1_000_000 * 0.9


def test_reconcile_removes_only_old_files_the_database_does_not_know(reg: Registry) -> None:
    known = reg.push_blob("team/app", b"known")
    store = reg.services.store
    orphan_old, orphan_new = b"crash leftover", b"being committed"
    store.put(sha256(orphan_old), [orphan_old])
    store.put(sha256(orphan_new), [orphan_new])
    old_path = store.local_path(sha256(orphan_old))
    assert old_path is not None
    os.utime(old_path, (time.time() - 7200, time.time() - 7200))
    reconciler = Reconciler(reg.services.blobs, min_age=3600)
    dry = reconciler.run(dry_run=True)
    assert dry.orphans == [sha256(orphan_old)] and dry.young == 1 and store.stat(sha256(orphan_old))
    done = reconciler.run()
    assert done.orphans == [sha256(orphan_old)] and store.stat(sha256(orphan_old)) is None
    assert store.stat(known) and store.stat(sha256(orphan_new))


# --- gc through the API ----------------------------------------------------------------------------
def test_gc_endpoint_dry_run_then_real(reg: Registry) -> None:
    digest = push(reg, "v1", b"doomed")
    reg.request("DELETE", "/v2/team/app/manifests/v1")
    dry = reg.http.post("/api/v1/system/gc", params={"dry_run": True}, headers=ADMIN).json()
    assert dry["manifests"] == 1 and dry["removed"]["manifests"] == [f"team/app@{digest}"] and dry["bytes"] > 0
    before = _metric(reg, "dockyard_gc_deleted_bytes_total")
    real = reg.http.post("/api/v1/system/gc", params={"dry_run": False}, headers=ADMIN).json()
    assert _metric(reg, "dockyard_gc_deleted_bytes_total") - before == real["bytes"]
    assert {k: real[k] for k in ("manifests", "blobs", "bytes")} == {k: dry[k] for k in ("manifests", "blobs", "bytes")}
    again = reg.http.post("/api/v1/system/gc", params={"dry_run": False}, headers=ADMIN).json()
    assert again["manifests"] == again["blobs"] == 0
    reg.services.users.create("dev", "dev-password")
    assert reg.http.post("/api/v1/system/gc", headers=basic("dev", "dev-password")).status_code == 403


def _metric(reg: Registry, name: str) -> float:
    for line in reg.http.get("/metrics", headers=ADMIN).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
