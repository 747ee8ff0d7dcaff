"""Robots, personal access tokens, disabled and deleted users, public projects, auto-creation,
brute-force protection and the audit trail, through the real HTTP API."""

from __future__ import annotations

import time

import jwt
import pytest

from dockyard.services.audit import AuditFilter, AuditLog
from dockyard.services.auth.permissions import Role
from dockyard.wiring import Services
from tests.api.conftest import ADMIN, Registry, basic

REPO = "team/app"


def granted(reg: Registry, headers: dict[str, str], scope: str) -> list[str]:
    r = reg.http.get("/token", params={"service": "dockyard", "scope": scope}, headers=headers)
    assert r.status_code == 200, r.text
    access = jwt.decode(r.json()["token"], options={"verify_signature": False})["access"]
    return sorted(access[0]["actions"]) if access else []


def bearer(reg: Registry, headers: dict[str, str], scope: str) -> dict[str, str]:
    r = reg.http.get("/token", params={"service": "dockyard", "scope": scope}, headers=headers)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def push_image(reg: Registry, tag: str = "v1") -> None:
    body = reg.image(REPO, [b"layer-" + tag.encode()])
    assert reg.put_manifest(REPO, tag, body).status_code == 201


def test_robot_secret_is_shown_once_and_scoped(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    registry.services.projects.create("other", creator="admin")
    r = registry.http.post(
        "/api/v1/robots", json={"name": "ci", "permissions": {"team": ["pull", "push"]}}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert r.json()["name"] == "robot$ci"
    # Never shown again, and stored only as a hash.
    again = registry.http.get("/api/v1/robots/robot$ci", headers=ADMIN).json()
    assert "secret" not in again
    with registry.services.db.read() as conn:
        stored = conn.exec_driver_sql("SELECT secret_hash FROM robots").scalar()
    assert stored != secret and secret not in str(stored)
    robot = basic("robot$ci", secret)
    assert granted(registry, robot, "repository:team/app:pull,push,delete") == ["pull", "push"]
    assert granted(registry, robot, "repository:other/app:pull") == []
    assert registry.http.get("/token", headers=basic("robot$ci", secret + "x")).status_code == 401


def test_expired_or_disabled_robot_loses_access_including_issued_tokens(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    created = registry.services.robots.create("puller", {"team": ["pull"]})
    creds = basic(created.robot.name, created.secret)
    auth = bearer(registry, creds, f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=auth).status_code == 200
    registry.http.patch("/api/v1/robots/puller", json={"disabled": True}, headers=ADMIN)
    r = registry.http.get(f"/v2/{REPO}/manifests/v1", headers=auth)
    assert r.status_code == 401 and "UNAUTHORIZED" in r.text
    assert registry.http.get("/token", headers=creds).status_code == 401
    # An expiry in the past is refused at creation; one that passes ends access.
    # The clock is moved past the expiry rather than waited for: a slow machine must not let the
    # expiry pass before the first check.
    soon = registry.services.robots.create("brief", {"team": ["pull"]}, expires_at=time.time() + 3600)
    brief = basic(soon.robot.name, soon.secret)
    assert granted(registry, brief, f"repository:{REPO}:pull") == ["pull"]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7200)
    assert registry.http.get("/token", headers=brief).status_code == 401


def test_personal_access_token_logs_in_and_revocation_is_immediate(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    registry.services.users.create("dev", "dev-password")
    registry.services.projects.set_member("team", "user", "dev", Role.DEVELOPER)
    dev = basic("dev", "dev-password")
    r = registry.http.post("/api/v1/me/tokens", json={"name": "laptop"}, headers=dev)
    assert r.status_code == 201, r.text
    pat = basic("dev", r.json()["secret"])
    assert granted(registry, pat, f"repository:{REPO}:pull,push") == ["pull", "push"]
    # A token for another user's name does not work.
    assert registry.http.get("/token", headers=basic("admin", r.json()["secret"])).status_code == 401
    auth = bearer(registry, pat, f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=auth).status_code == 200
    assert registry.http.delete("/api/v1/me/tokens/laptop", headers=dev).status_code == 204
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=auth).status_code == 401
    assert registry.http.get("/token", headers=pat).status_code == 401
    listed = registry.http.get("/api/v1/me/tokens", headers=dev).json()
    assert listed[0]["name"] == "laptop" and listed[0]["revoked_at"] is not None
    assert listed[0]["last_used_at"] is not None


@pytest.mark.parametrize("how", ["disable", "delete"])
def test_disabled_or_deleted_user_loses_access_at_once(registry: Registry, how: str) -> None:
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    registry.services.users.create("dev", "dev-password")
    registry.services.projects.set_member("team", "user", "dev", Role.DEVELOPER)
    auth = bearer(registry, basic("dev", "dev-password"), f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=auth).status_code == 200
    if how == "disable":
        r = registry.http.patch("/api/v1/users/dev", json={"disabled": True}, headers=ADMIN)
    else:
        r = registry.http.delete("/api/v1/users/dev", headers=ADMIN)
    assert r.status_code in (200, 204), r.text
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=auth).status_code == 401
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=basic("dev", "dev-password")).status_code == 401
    if how == "delete":  # a new account of the same name does not inherit the old grants
        registry.services.users.create("dev", "new-password")
        assert granted(registry, basic("dev", "new-password"), f"repository:{REPO}:pull") == []


def test_public_project_allows_anonymous_pull_only(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    assert registry.http.get(f"/v2/{REPO}/manifests/v1").status_code == 401
    assert granted(registry, {}, f"repository:{REPO}:pull") == []
    registry.http.patch("/api/v1/projects/team", json={"public": True}, headers=ADMIN)
    assert granted(registry, {}, f"repository:{REPO}:pull,push") == ["pull"]
    assert registry.http.get(f"/v2/{REPO}/manifests/v1").status_code == 200
    anon = bearer(registry, {}, f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=anon).status_code == 200
    r = registry.http.post(f"/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    assert [p["name"] for p in registry.http.get("/api/v1/projects").json()] == ["team"]


def test_push_into_missing_project(registry: Registry) -> None:
    registry.services.users.create("dev", "dev-password")
    dev = basic("dev", "dev-password")
    r = registry.http.post("/v2/nowhere/app/blobs/uploads/", headers=dev)
    assert r.status_code == 403 and "project 'nowhere' does not exist" in r.text, r.text
    assert registry.http.get("/api/v1/projects/nowhere", headers=ADMIN).status_code == 404
    # A user allowed to create projects gets it created on push, as its admin.
    registry.http.patch("/api/v1/users/dev", json={"can_create_projects": True}, headers=ADMIN)
    assert granted(registry, dev, "repository:mine/app:pull,push") == ["pull", "push"]
    members = registry.http.get("/api/v1/projects/mine/members", headers=dev).json()
    assert members == [{"kind": "user", "name": "dev", "role": "admin"}]
    events = registry.http.get("/api/v1/audit", params={"action": "project.create"}, headers=ADMIN).json()["events"]
    assert events[0]["project"] == "mine" and events[0]["actor"] == "dev" and events[0]["detail"]["auto"] is True


def test_brute_force_is_slowed_then_refused_and_audited(registry: Registry) -> None:
    guard = registry.services.authenticator.guard
    guard.settings = type(guard.settings)(
        slow_after=2, lock_after=4, ip_slow_after=8, ip_lock_after=10, max_delay_seconds=0.2
    )
    registry.services.users.create("dev", "dev-password")
    statuses = []
    for _ in range(5):
        statuses.append(registry.http.get("/token", headers=basic("dev", "wrong-password")).status_code)
    assert statuses == [401, 401, 401, 401, 429]
    # Locked: even the right password is refused for now, with Retry-After.
    r = registry.http.get("/token", headers=basic("dev", "dev-password"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0, r.text
    r = registry.http.get("/v2/", headers=basic("dev", "dev-password"))
    assert r.status_code == 429 and "TOOMANYREQUESTS" in r.text
    # The lock is on the account from this address (other addresses: test_hardening): other users
    # from the same address still sign in, until the address itself passes its (higher) limit.
    assert registry.http.get("/token", headers=ADMIN).status_code == 200
    for i in range(6):  # 4 failures for dev + 6 here, each on another account = the address's limit
        registry.http.get("/token", headers=basic(f"victim{i}", "guess"))
    assert registry.http.get("/token", headers=ADMIN).status_code == 429
    registry.services.db.engine.dispose()
    with registry.services.db.write() as conn:  # let the administrator back in to read the log
        conn.exec_driver_sql("DELETE FROM login_failures")
    events = registry.http.get("/api/v1/audit", params={"actor": "dev"}, headers=ADMIN).json()["events"]
    actions = [(e["action"], e["result"]) for e in events]
    assert ("login.lockout", "denied") in actions
    assert actions.count(("login", "failure")) == 4
    assert ("login", "denied") in actions


def test_audit_traces_push_pull_delete_to_one_identity(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    registry.services.users.create("dev", "dev-password")
    registry.services.projects.set_member("team", "user", "dev", Role.MAINTAINER)
    dev = {**basic("dev", "dev-password"), "User-Agent": "skopeo/1.0"}
    body = registry.image(REPO, [b"layer"])
    r = registry.http.put(
        f"/v2/{REPO}/manifests/v1",
        content=body,
        headers={**dev, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 201, r.text
    digest = r.headers["docker-content-digest"]
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=dev).status_code == 200
    assert registry.http.delete(f"/v2/{REPO}/manifests/v1", headers=dev).status_code == 202
    events = registry.http.get("/api/v1/audit", params={"repository": REPO, "actor": "dev"}, headers=ADMIN).json()
    got = [(e["action"], e["reference"], e["digest"], e["user_agent"], e["source_ip"]) for e in events["events"]]
    assert got == [
        ("delete", "v1", None, "skopeo/1.0", "testclient"),
        ("pull", "v1", digest, "skopeo/1.0", "testclient"),
        ("push", "v1", digest, "skopeo/1.0", "testclient"),
    ]
    # Filters by digest answer "who pulled this image"; export as CSV and JSON lines.
    pulls = registry.http.get("/api/v1/audit", params={"digest": digest, "action": "pull"}, headers=ADMIN).json()
    assert [e["actor"] for e in pulls["events"]] == ["dev"]
    csv_text = registry.http.get(
        "/api/v1/audit/export", params={"format": "csv", "repository": REPO}, headers=ADMIN
    ).text
    assert csv_text.splitlines()[0].startswith("id,ts,actor") and "push" in csv_text
    lines = registry.http.get("/api/v1/audit/export", params={"repository": REPO}, headers=ADMIN).text.splitlines()
    assert [__import__("json").loads(line)["action"] for line in lines] == ["push", "pull", "delete"]


def test_audit_event_of_a_failed_change_is_not_written(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    bad = registry.image(REPO, [b"layer"]).replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    assert registry.put_manifest(REPO, "v1", bad).status_code == 400
    events = registry.http.get("/api/v1/audit", params={"action": "push"}, headers=ADMIN).json()["events"]
    assert events == []


def test_audit_paging_and_retention(registry: Registry) -> None:
    audit = registry.services.audit
    with registry.services.db.write() as conn:
        for i in range(250):
            audit.record(conn, "probe", repository=f"team/r{i % 3}", reference=str(i))
    page1 = registry.http.get("/api/v1/audit", params={"action": "probe", "limit": 100}, headers=ADMIN).json()
    page2 = registry.http.get(
        "/api/v1/audit", params={"action": "probe", "limit": 100, "before": page1["next_before"]}, headers=ADMIN
    ).json()
    page3 = registry.http.get(
        "/api/v1/audit", params={"action": "probe", "limit": 100, "before": page2["next_before"]}, headers=ADMIN
    ).json()
    refs = [e["reference"] for p in (page1, page2, page3) for e in p["events"]]
    assert refs == [str(i) for i in range(249, -1, -1)] and page3["next_before"] is None
    assert audit.prune(older_than_seconds=3600) == 0
    assert audit.prune(older_than_seconds=0) >= 250


def test_management_errors_are_problem_json(registry: Registry) -> None:
    r = registry.http.post("/api/v1/projects", json={"name": "Bad Name!"}, headers=ADMIN)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "INVALID"
    r = registry.http.post("/api/v1/projects", json={"nome": "x"}, headers=ADMIN)
    assert r.status_code == 422 and "name" in r.json()["detail"]
    registry.http.post("/api/v1/projects", json={"name": "dup"}, headers=ADMIN)
    r = registry.http.post("/api/v1/projects", json={"name": "dup"}, headers=ADMIN)
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    r = registry.http.post(
        "/api/v1/robots", json={"name": "x", "permissions": {"dup": ["pull", "admin"]}}, headers=ADMIN
    )
    assert r.status_code == 422
    r = registry.http.get("/api/v1/projects", headers=basic("admin", "wrong"))
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"


def test_retention_prunes_in_the_background(registry: Registry) -> None:
    services = registry.services
    audit = AuditLog(services.db, flush_interval=0.05, retention_seconds=3600, prune_interval=0.0)
    with services.db.write() as conn:
        audit.record(conn, "old", repository="team/app")
        conn.exec_driver_sql("UPDATE audit_events SET ts = ts - 7200 WHERE action = 'old'")
        audit.record(conn, "recent", repository="team/app")
    audit.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows, _ = audit.query(AuditFilter(), 10)
        if "old" not in [r["action"] for r in rows]:
            break
        time.sleep(0.05)
    audit.close()
    assert [r["action"] for r in rows if r["action"] in ("old", "recent")] == ["recent"]


def test_disabling_on_one_replica_reaches_another_within_the_check_interval(registry: Registry) -> None:
    """Two replicas on one database: the one that disables refuses at once, the other within
    `account_check_seconds` (1 s by default), even for a token it has just accepted."""
    from dockyard.wiring import build_services

    other = build_services(registry.services.settings, db=registry.services.db)
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    registry.services.users.create("dev", "dev-password")
    registry.services.projects.set_member("team", "user", "dev", Role.DEVELOPER)
    token = bearer(registry, basic("dev", "dev-password"), f"repository:{REPO}:pull")["Authorization"][7:]
    claims = other.tokens.verify(token)
    assert other.authenticator.current(claims.subject, claims.uid, claims.credential) is not None  # now cached there
    registry.http.patch("/api/v1/users/dev", json={"disabled": True}, headers=ADMIN)
    assert registry.services.authenticator.current(claims.subject, claims.uid, claims.credential) is None
    deadline = time.monotonic() + 5
    while other.authenticator.current(claims.subject, claims.uid, claims.credential) is not None:
        assert time.monotonic() < deadline, "the other replica still accepts the disabled account"
        time.sleep(0.05)
    assert time.monotonic() < deadline


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),  # from the trusted proxy: the client it names
        ("10.0.0.5", "198.51.100.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),  # nearest untrusted hop
        ("192.0.2.50", "203.0.113.7", "192.0.2.50"),  # not from a proxy: the header is ignored
    ],
)
def test_client_address_behind_trusted_proxies(services: Services, peer: str, forwarded: str, expected: str) -> None:
    from starlette.testclient import TestClient

    from dockyard.api.app import create_app

    services.settings = services.settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    with TestClient(create_app(services), base_url="http://registry.test", client=(peer, 1234)) as client:
        client.get("/token", headers={**basic("admin", "wrong"), "X-Forwarded-For": forwarded})
        events = client.get("/api/v1/audit", params={"action": "login"}, headers=ADMIN).json()["events"]
    assert events[-1]["source_ip"] == expected
