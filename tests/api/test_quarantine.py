"""Quarantine through the management API and its effect on /v2 pulls, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.oci import mediatypes as mt
from dockyard.wiring import Services
from tests.api.conftest import ADMIN, Registry, basic, sha256

PASSWORD = "password-123"


@pytest.fixture
def reg(services: Services) -> Iterator[Registry]:
    services.settings = services.settings.model_copy(update={"security_reviewers": ["sec", "group:secteam"]})
    services.policy.security_reviewers = frozenset(services.settings.security_reviewers)
    with TestClient(create_app(services), base_url="http://registry.test") as client:
        yield Registry(client, services)


def _push(reg: Registry, repo: str, tag: str, seed: str = "a") -> str:
    body = reg.image(repo, [seed.encode()], config=json.dumps({"architecture": "amd64", "os": seed}).encode())
    assert reg.put_manifest(repo, tag, body).status_code == 201
    return sha256(body)


def _people(svc: Services) -> None:
    svc.users.create("maint", PASSWORD)
    svc.users.create("dev", PASSWORD)
    svc.users.create("sec", PASSWORD)
    svc.projects.set_member("proj", "user", "maint", svc_role("maintainer"))
    svc.projects.set_member("proj", "user", "dev", svc_role("developer"))
    svc.projects.set_member("proj", "user", "sec", svc_role("guest"))


def svc_role(name: str):  # type: ignore[no-untyped-def]
    from dockyard.services.auth.permissions import Role

    return Role.parse(name)


def _quarantine_url(repo: str, digest: str) -> str:
    return f"/api/v1/repositories/{repo}/manifests/{digest}/quarantine"


def test_quarantine_refuses_pulls_with_the_reason_and_release_serves_again(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    digest = _push(reg, "proj/app", "v1")
    _push(reg, "proj/copy", "same", "a")  # the same image under another name in the project
    _people(svc)
    dev, maint, sec = basic("dev", PASSWORD), basic("maint", PASSWORD), basic("sec", PASSWORD)
    assert reg.http.get("/v2/proj/app/manifests/v1", headers=dev).status_code == 200

    # Developers may not quarantine; maintainers may.
    r = reg.http.post(_quarantine_url("proj/app", digest), json={"reason": "CVE-2024-0001 in libfoo"}, headers=dev)
    assert r.status_code == 403, r.text
    r = reg.http.post(_quarantine_url("proj/app", digest), json={"reason": "CVE-2024-0001 in libfoo"}, headers=maint)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["reason"] == "CVE-2024-0001 in libfoo" and out["quarantined_by"] == "maint" and not out["automatic"]
    assert out["repositories"] == ["proj/app", "proj/copy"]

    # Refused by tag and by digest, in every repository of the project holding it, for a developer.
    for url in ("/v2/proj/app/manifests/v1", f"/v2/proj/app/manifests/{digest}", "/v2/proj/copy/manifests/same"):
        r = reg.http.get(url, headers=dev)
        assert r.status_code == 403, (url, r.text)
        error = r.json()["errors"][0]
        assert error["code"] == "DENIED"
        assert "CVE-2024-0001 in libfoo" in error["message"] and "quarantined" in error["message"]
        assert error["detail"]["gate"] == "quarantine" and error["detail"]["quarantined_at"].endswith("Z")
    # A HEAD still answers (it serves no content), the digest a client resolves stays visible.
    assert reg.http.head("/v2/proj/app/manifests/v1", headers=dev).status_code == 200
    # System administrators and security reviewers may pull it.
    assert reg.http.get("/v2/proj/app/manifests/v1", headers=ADMIN).status_code == 200
    assert reg.http.get("/v2/proj/app/manifests/v1", headers=sec).status_code == 200

    # Twice: 409, nothing changed.
    r = reg.http.post(_quarantine_url("proj/app", digest), json={"reason": "again"}, headers=maint)
    assert r.status_code == 409
    assert [q["reason"] for q in reg.http.get("/api/v1/quarantine", headers=maint).json()] == [
        "CVE-2024-0001 in libfoo"
    ]

    # Audited with the reason, both ways.
    assert reg.http.delete(_quarantine_url("proj/app", digest), headers=dev).status_code == 403
    assert reg.http.delete(_quarantine_url("proj/app", digest), headers=maint).status_code == 204
    assert reg.http.delete(_quarantine_url("proj/app", digest), headers=maint).status_code == 404
    assert reg.http.get("/v2/proj/app/manifests/v1", headers=dev).status_code == 200
    svc.audit.flush()
    events = reg.http.get("/api/v1/audit", params={"project": "proj"}, headers=ADMIN).json()["events"]
    mine = [(e["action"], e["actor"], e["detail"]["reason"]) for e in events if e["action"].startswith("quarantine")]
    assert mine == [
        ("quarantine.release", "maint", "CVE-2024-0001 in libfoo"),
        ("quarantine", "maint", "CVE-2024-0001 in libfoo"),
    ]
    # And in the outbox, for webhooks.
    kinds = [e.kind for e in svc.outbox.read(limit=1000)]
    assert "image.quarantined" in kinds and "image.released" in kinds


def test_an_index_with_a_quarantined_child_is_refused(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    child = _push(reg, "proj/multi", "amd64", "x")
    other = _push(reg, "proj/multi", "arm64", "y")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": 1, "platform": {"architecture": a, "os": "linux"}}
                for d, a in ((child, "amd64"), (other, "arm64"))
            ],
        }
    ).encode()
    # Sizes must be right for the registry to accept the index.
    doc = json.loads(index)
    for entry in doc["manifests"]:
        entry["size"] = len(svc.manifests.get("proj/multi", entry["digest"]).content)
    index = json.dumps(doc).encode()
    assert reg.put_manifest("proj/multi", "latest", index, mt.OCI_INDEX).status_code == 201
    _people(svc)
    dev = basic("dev", PASSWORD)
    r = reg.request("POST", _quarantine_url("proj/multi", child), json={"reason": "bad amd64 build"})
    assert r.status_code == 201
    r = reg.http.get("/v2/proj/multi/manifests/latest", headers=dev)
    assert r.status_code == 403 and "bad amd64 build" in r.text and child in r.text
    assert reg.http.get("/v2/proj/multi/manifests/arm64", headers=dev).status_code == 200


def test_quarantine_reaches_no_further_than_the_project(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    svc.projects.create("other", public=True, creator="admin")
    digest = _push(reg, "proj/app", "v1")
    _push(reg, "other/app", "v1")  # the same bytes in another project
    _people(svc)
    r = reg.http.post(_quarantine_url("proj/app", digest), json={"reason": "r"}, headers=basic("maint", PASSWORD))
    assert r.status_code == 201
    assert reg.http.get("/v2/other/app/manifests/v1").status_code == 200  # public, anonymous: not affected
    # A maintainer of proj cannot quarantine it in the other project.
    r = reg.http.post(_quarantine_url("other/app", digest), json={"reason": "r"}, headers=basic("maint", PASSWORD))
    assert r.status_code == 403
    # The security reviewer may, in any project, without being a member.
    r = reg.http.post(_quarantine_url("other/app", digest), json={"reason": "seen"}, headers=basic("sec", PASSWORD))
    assert r.status_code == 201, r.text
    assert reg.http.get("/v2/other/app/manifests/v1").status_code == 403


def test_a_quarantine_outlives_the_manifest(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    digest = _push(reg, "proj/app", "v1")
    assert reg.request("POST", _quarantine_url("proj/app", digest), json={"reason": "bad"}).status_code == 201
    assert reg.request("DELETE", f"/v2/proj/app/manifests/{digest}").status_code == 202
    assert [q["repositories"] for q in reg.request("GET", "/api/v1/quarantine").json()] == [[]]
    _people(svc)
    dev = basic("dev", PASSWORD)
    # Pushed again (here under another name in the project): still quarantined.
    assert _push(reg, "proj/again", "v1") == digest
    assert reg.http.get("/v2/proj/again/manifests/v1", headers=dev).status_code == 403
    assert reg.http.delete(_quarantine_url("proj/gone", digest), headers=dev).status_code == 403
    assert reg.http.delete(_quarantine_url("proj/gone", digest), headers=basic("maint", PASSWORD)).status_code == 204
    assert reg.http.get("/v2/proj/again/manifests/v1", headers=dev).status_code == 200


def test_bad_input_changes_nothing(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    digest = _push(reg, "proj/app", "v1")
    cases = [
        (_quarantine_url("proj/app", "v1"), {"reason": "by tag"}, 400),
        (_quarantine_url("proj/app", "sha256:123"), {"reason": "short digest"}, 400),
        (_quarantine_url("proj/app", "md5:" + "0" * 32), {"reason": "unsupported digest"}, 400),
        (_quarantine_url("proj/app", digest), {}, 422),
        (_quarantine_url("proj/app", digest), {"reason": ""}, 422),
        (_quarantine_url("proj/app", digest), {"reason": "   "}, 400),
        (_quarantine_url("proj/app", digest), {"reason": "x" * 2001}, 422),
        (_quarantine_url("proj/app", digest), {"reason": "a\x00b"}, 400),
        (_quarantine_url("proj/app", digest), {"reason": "ok", "extra": 1}, 422),
        (_quarantine_url("proj/app", "sha256:" + "0" * 64), {"reason": "missing"}, 404),
        (_quarantine_url("proj/nothing", digest), {"reason": "missing repo"}, 404),
        (_quarantine_url("nope/app", digest), {"reason": "missing project"}, 404),
    ]
    for url, body, status in cases:
        r = reg.request("POST", url, json=body)
        assert r.status_code == status, (url, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = reg.request(
        "POST", _quarantine_url("proj/app", digest), content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code in (400, 422)
    assert reg.request("GET", "/api/v1/quarantine").json() == []
    assert reg.request("GET", "/v2/proj/app/manifests/v1").status_code == 200


def test_listings_show_quarantine(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    svc.projects.create("hidden", public=False, creator="admin")
    digest = _push(reg, "proj/app", "v1")
    hidden = _push(reg, "hidden/app", "v1", "h")
    _people(svc)
    reg.request("POST", _quarantine_url("proj/app", digest), json={"reason": "looked bad"})
    reg.request("POST", _quarantine_url("hidden/app", hidden), json={"reason": "secret"})
    dev = basic("dev", PASSWORD)
    # GET /quarantine: what the caller may read.
    assert [q["digest"] for q in reg.http.get("/api/v1/quarantine", headers=dev).json()] == [digest]
    assert {q["digest"] for q in reg.request("GET", "/api/v1/quarantine").json()} == {digest, hidden}
    assert {q["digest"] for q in reg.http.get("/api/v1/quarantine", headers=basic("sec", PASSWORD)).json()} == {
        digest,
        hidden,
    }
    assert reg.http.get("/api/v1/quarantine", params={"project": "hidden"}, headers=dev).status_code == 404
    assert reg.http.get("/api/v1/quarantine").status_code == 401
    # The scan report.
    report = reg.http.get("/api/v1/repositories/proj/app/manifests/v1/scan", headers=dev).json()
    assert report["quarantine"]["reason"] == "looked bad"
    assert report["images"][0]["quarantined"] is True
    # The project's repositories.
    repos = reg.http.get("/api/v1/projects/proj/repositories", headers=dev).json()
    assert [(x["name"], x["quarantined_images"]) for x in repos] == [("proj/app", 1)]


def test_security_reviewer_by_group(reg: Registry) -> None:
    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    digest = _push(reg, "proj/app", "v1")
    from dockyard.services.auth.identity import Identity

    member = Identity("carol", groups=frozenset({"secteam"}))
    assert svc.policy.system_role(member) is not None
    assert svc.policy.system_role(replace(member, groups=frozenset({"devs"}))) is None
    svc.quarantines.quarantine("proj/app", digest, "r")
    m = svc.manifests.get("proj/app", "v1")
    svc.gates.check_pull("proj/app", m.digest, m.media_type, m.content, member)  # no refusal


def test_every_kind_of_credential(reg: Registry) -> None:
    """Basic password, personal access token and session for people; robots never hold
    quarantine:manage; a registry token from /token is not a management credential."""
    from dockyard.services.auth.tokens import Scope

    svc = reg.services
    svc.projects.create("proj", public=False, creator="admin")
    _people(svc)
    maint = svc.authenticator.authenticate("maint", PASSWORD)
    assert maint is not None
    pat = svc.access_tokens.create("maint", "ci").secret
    bot = svc.robots.create("deployer", {"proj": ["pull", "push", "delete"]})
    registry_token = svc.tokens.issue(maint, [Scope("repository", "proj/app", frozenset({"pull", "push"}))], ttl=60)
    credentials = {
        "password": (basic("maint", PASSWORD), 201),
        "access token": (basic("maint", pat), 201),
        "session": ({"Cookie": f"dockyard_session={svc.tokens.issue_session(maint, 600)}"}, 201),
        "robot secret": (basic(bot.robot.name, bot.secret), 403),
        "registry token": ({"Authorization": f"Bearer {registry_token.token}"}, 401),
        "anonymous": ({}, 401),
    }
    for label, (headers, status) in credentials.items():
        digest = _push(reg, "proj/app", label.replace(" ", "-"), label)
        url = _quarantine_url("proj/app", digest)
        r = reg.http.post(url, json={"reason": label}, headers=headers)
        assert r.status_code == status, (label, r.text)
        if status == 201:
            assert r.json()["quarantined_by"] == "maint"
            assert reg.http.delete(url, headers=headers).status_code == 204, label
            assert reg.http.get("/api/v1/quarantine", headers=headers).status_code == 200, label
        else:
            assert svc.quarantines.active("proj", [digest]) == []
            reg.request("POST", url, json={"reason": "by admin"})
            assert reg.http.delete(url, headers=headers).status_code == status, label
            assert svc.quarantines.active("proj", [digest]) != []
    # The project rule: project admins only (PATCH), readers see it.
    r = reg.http.patch(
        "/api/v1/projects/proj/quarantine-policy",
        json={"auto_quarantine_severity": "high"},
        headers=basic("maint", PASSWORD),
    )
    assert r.status_code == 403
    r = reg.request("PATCH", "/api/v1/projects/proj/quarantine-policy", json={"auto_quarantine_severity": "high"})
    assert r.status_code == 200 and r.json() == {"auto_quarantine_severity": "high"}
    r = reg.http.get("/api/v1/projects/proj/quarantine-policy", headers=basic(bot.robot.name, bot.secret))
    assert r.json() == {"auto_quarantine_severity": "high"}
    for bad in ({"auto_quarantine_severity": "severe"}, {"other": 1}, {"auto_quarantine_severity": 3}):
        assert reg.request("PATCH", "/api/v1/projects/proj/quarantine-policy", json=bad).status_code == 422
    assert reg.request("PATCH", "/api/v1/projects/proj/quarantine-policy", json={}).json() == {
        "auto_quarantine_severity": "high"
    }
    r = reg.request("PATCH", "/api/v1/projects/proj/quarantine-policy", json={"auto_quarantine_severity": None})
    assert r.json() == {"auto_quarantine_severity": None}
    svc.audit.flush()
    events = reg.request("GET", "/api/v1/audit", params={"project": "proj", "action": "project.quarantine_policy"})
    assert [e["detail"]["auto_quarantine_severity"] for e in events.json()["events"]] == [None, "HIGH"]
