"""Access decisions that decide and nothing else, on SQLite and PostgreSQL.

- `AccessPolicy` only reads: asking it anything leaves every table as it was;
- the one write an access request may cause, creating the project a push goes into, is
  `ensure_push_projects`, called by /token and by Basic-authenticated /v2 pushes, as before;
- the scanner's exemption from pull policies is a system permission of its identity;
- every "system administrators only" endpoint asks the system matrix, for every kind of credential;
- the authenticator records a login's use through the service owning the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.audit import AuditFilter
from dockyard.services.auth import permissions
from dockyard.services.auth.identity import SCANNER, SCANNER_SUBJECT, SYSTEM, USER, Identity
from dockyard.services.auth.ldap import LdapUser
from dockyard.services.auth.permissions import SYSTEM_MATRIX, SystemPermission, SystemRole
from dockyard.services.auth.provisioning import ensure_push_projects, request_access
from dockyard.services.auth.scopes import Scope
from dockyard.wiring import Services
from tests.api.conftest import ADMIN, ADMIN_PASSWORD, Registry, basic, sha256
from tests.support.trust_material import ca_pem, ec_pem

PASSWORD = "password-123"


def scope(name: str, *actions: str, type_: str = "repository") -> Scope:
    return Scope(type_, name, frozenset(actions))


def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table, as text: a change anywhere shows."""
    with db.read() as conn:
        return {t.name: sorted(repr(tuple(r)) for r in conn.execute(sa.select(t))) for t in s.metadata.sorted_tables}


def login(svc: Services, name: str, password: str = PASSWORD) -> Identity:
    identity = svc.authenticator.authenticate(name, password)
    assert identity is not None
    return identity


def audited(svc: Services, action: str) -> int:
    svc.audit.flush()
    rows, _ = svc.audit.query(AuditFilter(action=action), 100)
    return len(rows)


@pytest.fixture
def people(services: Services) -> dict[str, Identity]:
    services.projects.create("team", public=False, creator="admin")
    services.projects.create("open", public=True, creator="admin")
    services.users.create("dev", PASSWORD, can_create_projects=True)
    services.users.create("plain", PASSWORD)
    services.projects.set_member("team", "user", "plain", permissions.Role.DEVELOPER)
    bot = services.robots.create("bot", {"team": ["pull", "push"]})
    return {
        "admin": login(services, "admin", ADMIN_PASSWORD),
        "dev": login(services, "dev"),
        "plain": login(services, "plain"),
        "robot": login(services, bot.robot.name, bot.secret),
        "anonymous": Identity(""),
        "scanner": SCANNER,
    }


# --- the decision writes nothing ----------------------------------------------------------------
def test_asking_the_policy_writes_nothing(services: Services, people: dict[str, Identity]) -> None:
    policy = services.policy
    requests = [
        [scope("fresh/app", "pull", "push")],  # a push into a project that does not exist
        [scope("fresh2/app", "*")],
        [scope("team/app", "pull", "push", "delete"), scope("open/x", "pull")],
        [scope("catalog", "*", type_="registry")],
        [scope("team/app", "bogus")],
    ]
    services.audit.flush()
    before = snapshot(services.db)
    for identity in people.values():
        for requested in requests:
            policy.grant(identity, requested)
            policy.push_projects_to_create(identity, requested)
            policy.explain(identity, requested[0])
        for name in ("team", "open", "fresh"):
            policy.permissions(identity, name)
        policy.visible_projects(identity)
        policy.can_create_projects(identity)
        for perm in SystemPermission:
            policy.can_system(identity, perm)
    services.audit.flush()
    assert snapshot(services.db) == before
    # The decision on a push into a missing project is "no", until the project is ensured.
    assert policy.grant(people["dev"], [scope("fresh/app", "pull", "push")]) == []
    assert policy.push_projects_to_create(people["dev"], requests[0] + requests[1]) == ["fresh", "fresh2"]


def test_ensure_push_projects_creates_only_what_a_permitted_push_needs(
    services: Services, people: dict[str, Identity]
) -> None:
    ensure = ensure_push_projects
    policy, projects = services.policy, services.projects
    assert ensure(policy, projects, people["dev"], [scope("pulled/app", "pull")]) == []
    assert ensure(policy, projects, people["plain"], [scope("denied/app", "push")]) == []  # may not create
    assert ensure(policy, projects, people["robot"], [scope("robots/app", "push")]) == []
    assert ensure(policy, projects, people["dev"], [scope("Bad_Name!/app", "push")]) == []  # fails on the name
    assert ensure(policy, projects, people["dev"], [scope("team/app", "push")]) == []  # exists
    created = ensure(policy, projects, people["dev"], [scope("made/app", "push"), scope("made/other", "*")])
    assert [p.name for p in created] == ["made"]
    assert [(m.principal, m.role) for m in projects.members("made")] == [("dev", permissions.Role.ADMIN)]
    assert ensure(policy, projects, people["dev"], [scope("made/app", "push")]) == []  # once
    for name in ("pulled", "denied", "robots"):
        assert policy.permissions(people["admin"], name)[0] is None
    services.policy.auto_create_projects = False
    assert ensure(policy, projects, people["admin"], [scope("off/app", "push")]) == []
    granted = request_access(policy, projects, people["admin"], [scope("made/app", "pull", "push")])
    assert granted == [scope("made/app", "pull", "push")]


def test_a_push_still_creates_its_project_at_token_and_on_v2(registry: Registry) -> None:
    svc = registry.services
    svc.users.create("dev", PASSWORD, can_create_projects=True)
    svc.users.create("plain", PASSWORD)
    dev, plain = basic("dev", PASSWORD), basic("plain", PASSWORD)

    def token(headers: dict[str, str], repo: str, actions: str) -> set[tuple[str, str, str]]:
        params = {"service": "dockyard", "scope": f"repository:{repo}:{actions}"}
        r = registry.http.get("/token", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return set(svc.tokens.verify(r.json()["token"]).access)

    # /token: asking for pull alone creates nothing; asking for push does, once.
    assert token(dev, "viatoken/app", "pull") == set()
    assert svc.policy.permissions(Identity("admin", is_admin=True), "viatoken")[0] is None
    assert token(dev, "viatoken/app", "pull,push") == {
        ("repository", "viatoken/app", "pull"),
        ("repository", "viatoken/app", "push"),
    }
    assert token(dev, "viatoken/other", "push") == {("repository", "viatoken/other", "push")}
    assert [m.principal for m in svc.projects.members("viatoken")] == ["dev"]
    # A caller who may not create projects gets nothing, and no project.
    assert token(plain, "notmine/app", "pull,push") == set()
    # /v2 with Basic credentials: the push's first request creates the project.
    r = registry.http.post("/v2/viabasic/app/blobs/uploads/", headers=dev)
    assert r.status_code == 202, r.text
    assert svc.projects.get("viabasic").created_by == "dev"
    r = registry.http.post("/v2/notmine2/app/blobs/uploads/", headers=plain)
    assert r.status_code == 403, r.text
    for name in ("notmine", "notmine2"):
        assert svc.policy.permissions(Identity("admin", is_admin=True), name)[0] is None
    assert audited(svc, "project.create") == 2


# --- the scanner's capability -------------------------------------------------------------------
def test_only_the_scanner_identity_bypasses_the_pull_gate(registry: Registry) -> None:
    svc = registry.services
    svc.projects.create("gated", public=False, creator="admin")
    bot = svc.robots.create("reader", {"gated": ["pull"]})
    body = registry.image("gated/app", [b"layer"])
    assert registry.put_manifest("gated/app", "v1", body).status_code == 201
    svc.projects.set_scan_policy("gated", block_unscanned=True)
    svc.gates.forget()

    pull = scope("gated/app", "pull")
    scanner_token = svc.tokens.issue(SCANNER, [pull], ttl=60).token
    admin_token = svc.tokens.issue(login(svc, "admin", ADMIN_PASSWORD), [pull], ttl=60).token
    callers = {
        "admin (basic)": ADMIN,
        "admin (token)": {"Authorization": f"Bearer {admin_token}"},
        "robot with pull": basic(bot.robot.name, bot.secret),
        "scanner": {"Authorization": f"Bearer {scanner_token}"},
    }
    answers = {
        label: registry.http.get("/v2/gated/app/manifests/v1", headers=h).status_code for label, h in callers.items()
    }
    assert answers == {"admin (basic)": 403, "admin (token)": 403, "robot with pull": 403, "scanner": 200}
    # The capability belongs to the scanner's system identity, not to the name alone.
    policy = svc.policy
    assert policy.can_system(SCANNER, SystemPermission.BYPASS_PULL_GATE)
    assert not policy.can_system(Identity(SCANNER_SUBJECT, kind=USER), SystemPermission.BYPASS_PULL_GATE)
    assert not policy.can_system(Identity("other$dockyard", kind=SYSTEM), SystemPermission.BYPASS_PULL_GATE)
    assert not policy.can_system(Identity("admin", is_admin=True), SystemPermission.BYPASS_PULL_GATE)


def test_the_pull_gate_exemption_is_read_from_the_matrix(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = registry.services
    svc.projects.create("gated", public=False, creator="admin")
    assert registry.put_manifest("gated/app", "v1", registry.image("gated/app", [b"x"])).status_code == 201
    svc.projects.set_scan_policy("gated", block_unscanned=True)
    svc.gates.forget()
    token = svc.tokens.issue(SCANNER, [scope("gated/app", "pull")], ttl=60).token
    monkeypatch.setitem(SYSTEM_MATRIX, SystemPermission.BYPASS_PULL_GATE, frozenset())
    r = registry.http.get("/v2/gated/app/manifests/v1", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "not been scanned" in r.text


# --- system permissions, per endpoint and credential kind ---------------------------------------
@dataclass(frozen=True)
class SystemOp:
    label: str
    permission: SystemPermission
    call: Callable[[httpx.Client, dict[str, str]], httpx.Response]
    refused_signed_in: int = 403  # what a signed-in caller without the permission gets


def system_ops(registry: Registry) -> Iterator[SystemOp]:
    svc = registry.services
    svc.projects.create("sys", public=False)  # no creator: nobody is a member
    svc.projects.create("sys2", public=False)
    svc.users.create("victim", PASSWORD)
    n = iter(range(10**6))
    U, P = SystemPermission.MANAGE_USERS, SystemPermission
    yield SystemOp("GET users", U, lambda c, h: c.get("/api/v1/users", headers=h))
    yield SystemOp(
        "POST user",
        U,
        lambda c, h: c.post("/api/v1/users", json={"username": f"u{next(n)}", "password": PASSWORD}, headers=h),
    )
    yield SystemOp("GET other user", U, lambda c, h: c.get("/api/v1/users/victim", headers=h))
    yield SystemOp(
        "PATCH other user", U, lambda c, h: c.patch("/api/v1/users/victim", json={"email": "v@x"}, headers=h)
    )
    yield SystemOp(
        "PUT other's password",
        U,
        lambda c, h: c.put("/api/v1/users/victim/password", json={"password": PASSWORD}, headers=h),
    )
    yield SystemOp("POST unlock", U, lambda c, h: c.post("/api/v1/users/victim/unlock", headers=h))

    def delete_user(c: httpx.Client, h: dict[str, str]) -> httpx.Response:
        name = f"gone{next(n)}"
        svc.users.create(name, PASSWORD)
        return c.delete(f"/api/v1/users/{name}", headers=h)

    yield SystemOp("DELETE user", U, delete_user)
    yield SystemOp("GET every robot", P.MANAGE_ROBOTS, lambda c, h: c.get("/api/v1/robots", headers=h), 400)
    yield SystemOp("GET whole audit", P.READ_ALL_AUDIT, lambda c, h: c.get("/api/v1/audit", headers=h), 400)
    yield SystemOp(
        "PUT quota",
        P.SET_QUOTAS,
        lambda c, h: c.put("/api/v1/projects/sys/quota", json={"quota_bytes": 10**9}, headers=h),
    )

    def remove_rule(c: httpx.Client, h: dict[str, str]) -> httpx.Response:
        pattern = f"r{next(n)}-*"
        assert (
            c.post("/api/v1/projects/sys/immutable-tags", json={"pattern": pattern}, headers=ADMIN).status_code == 201
        )
        return c.delete(f"/api/v1/projects/sys/immutable-tags/{pattern}", headers=h)

    yield SystemOp("DELETE immutable rule", P.REMOVE_TAG_RULES, remove_rule)
    yield SystemOp("POST gc", P.RUN_GC, lambda c, h: c.post("/api/v1/system/gc", params={"dry_run": True}, headers=h))
    yield SystemOp("POST vulndb update", P.UPDATE_VULNDB, lambda c, h: c.post("/api/v1/vulndb/update", headers=h))
    yield SystemOp("GET settings", P.READ_SYSTEM, lambda c, h: c.get("/api/v1/system/settings", headers=h))
    yield SystemOp("GET storage", P.READ_SYSTEM, lambda c, h: c.get("/api/v1/system/storage", headers=h))

    def quarantine(c: httpx.Client, h: dict[str, str]) -> httpx.Response:
        # In a project nobody is a member of (the robot's grants are in `sys`): others get 404.
        body = registry.image("sys2/app", [f"q{next(n)}".encode()])
        assert registry.put_manifest("sys2/app", sha256(body), body).status_code == 201
        return c.post(
            f"/api/v1/repositories/sys2/app/manifests/{sha256(body)}/quarantine", json={"reason": "r"}, headers=h
        )

    yield SystemOp("POST quarantine", P.MANAGE_QUARANTINE, quarantine, 404)
    yield SystemOp("GET catalog", P.LIST_CATALOG, lambda c, h: c.get("/v2/_catalog", headers=h))
    yield SystemOp("GET metrics", P.READ_METRICS, lambda c, h: c.get("/metrics", headers=h))
    yield SystemOp(
        "POST project",
        P.CREATE_PROJECTS,
        lambda c, h: c.post("/api/v1/projects", json={"name": f"p{next(n)}"}, headers=h),
    )
    yield SystemOp(
        "POST system trust key",
        P.MANAGE_TRUST,
        lambda c, h: c.post(
            "/api/v1/system/trust/keys", json={"name": f"k{next(n)}", "public_key": ec_pem()}, headers=h
        ),
    )

    def delete_system_certificate(c: httpx.Client, h: dict[str, str]) -> httpx.Response:
        name = f"c{next(n)}"
        svc.trust.add_certificate(None, name, ca_pem(), [])
        return c.delete(f"/api/v1/system/trust/certificates/{name}", headers=h)

    yield SystemOp("DELETE system trust certificate", P.MANAGE_TRUST, delete_system_certificate)
    # A project the caller is no member of: others are told it does not exist.
    yield SystemOp("GET private project", P.ALL_PROJECTS, lambda c, h: c.get("/api/v1/projects/sys2", headers=h), 404)


PULL_ONLY = {SystemPermission.BYPASS_PULL_GATE, SystemPermission.PULL_QUARANTINED}  # asked by pulls, not endpoints
BASIC_ONLY = {"GET catalog", "GET metrics"}  # endpoints that read Basic credentials (or a bearer token), not sessions


def credentials(registry: Registry) -> dict[str, tuple[dict[str, str], SystemRole | None]]:
    """Every kind of credential the management API (and /v2) takes, and the system role behind it."""
    svc = registry.services
    svc.users.create("someone", PASSWORD)
    admin = login(svc, "admin", ADMIN_PASSWORD)
    bot = svc.robots.create("sysbot", {"sys": ["pull", "push", "delete"]})
    admin_pat = svc.access_tokens.create("admin", "t").secret
    user_pat = svc.access_tokens.create("someone", "t").secret
    A = SystemRole.ADMINISTRATOR
    return {
        "anonymous": ({}, None),
        "admin password": (ADMIN, A),
        "admin access token": (basic("admin", admin_pat), A),
        "admin session": ({"Cookie": f"dockyard_session={svc.tokens.issue_session(admin, 600)}"}, A),
        "user password": (basic("someone", PASSWORD), None),
        "user access token": (basic("someone", user_pat), None),
        "robot secret": (basic(bot.robot.name, bot.secret), None),
    }


def test_every_system_endpoint_answers_as_the_system_matrix_says(registry: Registry) -> None:
    ops = list(system_ops(registry))
    # Every system permission but the scanner's has an endpoint here, so a new one needs a row.
    # (Pulling a quarantined image is tested in tests/api/test_quarantine.py.)
    assert {op.permission for op in ops} == set(SystemPermission) - PULL_ONLY
    problems = []
    for label, (headers, role) in credentials(registry).items():
        for op in ops:
            r = op.call(registry.http, headers)
            # /v2 and /metrics take no session cookie: there, it is no credential at all.
            signed_in = bool(headers) and not (op.label in BASIC_ONLY and "Cookie" in headers)
            if signed_in and permissions.system_allowed(role, op.permission):
                ok = 200 <= r.status_code < 300
            elif not signed_in:
                ok = r.status_code == 401
            else:
                ok = r.status_code == op.refused_signed_in
            if not ok:
                problems.append(f"{label} {op.label}: {r.status_code} {r.text[:120]}")
    assert problems == []


# Administrators also quarantine anywhere through system:all-projects (quarantine:manage in every project).
@pytest.mark.parametrize("permission", sorted(set(SystemPermission) - PULL_ONLY - {SystemPermission.MANAGE_QUARANTINE}))
def test_system_endpoints_ask_the_matrix(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, permission: SystemPermission
) -> None:
    """Take a permission away from administrators in the matrix: its endpoints refuse them."""
    ops = [op for op in system_ops(registry) if op.permission is permission]
    monkeypatch.setitem(SYSTEM_MATRIX, permission, frozenset())
    for op in ops:
        r = op.call(registry.http, ADMIN)
        assert r.status_code in (op.refused_signed_in, 403), (op.label, r.status_code, r.text)


def test_metrics_users_read_metrics_without_the_system_permission(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = registry.services
    svc.projects.create("sys")
    bot = svc.robots.create("scraper", {"sys": ["pull"]})
    svc.users.create("prom", PASSWORD)
    pat = svc.access_tokens.create("prom", "scrape").secret
    callers = {"robot secret": basic(bot.robot.name, bot.secret), "user access token": basic("prom", pat)}
    assert {k: registry.http.get("/metrics", headers=h).status_code for k, h in callers.items()} == {
        "robot secret": 403,
        "user access token": 403,
    }
    svc.settings = svc.settings.model_copy(update={"metrics_users": [bot.robot.name, "prom"]})
    monkeypatch.setitem(SYSTEM_MATRIX, SystemPermission.READ_METRICS, frozenset())  # nobody holds it
    assert {k: registry.http.get("/metrics", headers=h).status_code for k, h in callers.items()} == {
        "robot secret": 200,
        "user access token": 200,
    }
    assert registry.http.get("/metrics", headers=ADMIN).status_code == 403


def test_vulndb_requester_is_shown_to_who_may_update(registry: Registry) -> None:
    svc = registry.services
    svc.users.create("someone", PASSWORD)
    assert registry.http.post("/api/v1/vulndb/update", headers=ADMIN).status_code == 202
    mine = registry.http.get("/api/v1/vulndb", headers=ADMIN).json()["update"]
    theirs = registry.http.get("/api/v1/vulndb", headers=basic("someone", PASSWORD)).json()["update"]
    assert mine.get("requested_by") == "admin" and "requested_by" not in theirs


# --- the authenticator and the policy go through the owning services ----------------------------
def test_a_token_login_is_recorded_by_the_access_token_service(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.users.create("dev", PASSWORD)
    created = services.access_tokens.create("dev", "ci")
    assert services.authenticator.login("dev", created.secret, "10.0.0.1").identity is not None
    assert services.access_tokens.list("dev")[0].last_used_at is not None  # still updated

    second = services.access_tokens.create("dev", "ci2")
    used: list[int] = []
    monkeypatch.setattr(services.access_tokens, "mark_used", used.append)
    assert services.authenticator.login("dev", second.secret, "10.0.0.1").identity is not None
    assert used == [second.token.id]
    # The authenticator wrote nothing itself: with the service's recording replaced, the row is as it was.
    assert [t.last_used_at for t in services.access_tokens.list("dev") if t.name == "ci2"] == [None]
    # A Basic login on /v2 (record_success=False) does not count as a use.
    assert services.authenticator.login("dev", second.secret, "10.0.0.1", record_success=False).identity
    assert used == [second.token.id]


def test_the_authenticator_reads_accounts_through_their_services(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.users.create("dev", PASSWORD)
    services.projects.create("team")
    bot = services.robots.create("bot", {"team": ["pull"]})
    pat = services.access_tokens.create("dev", "ci").secret
    assert services.authenticator.authenticate(bot.robot.name, bot.secret) is not None
    assert services.authenticator.authenticate("dev", pat) is not None
    # The services say "no such account": the authenticator believes them.
    monkeypatch.setattr(services.robots, "login_record", lambda *a, **k: None)
    monkeypatch.setattr(services.access_tokens, "find_live", lambda *a, **k: None)
    assert services.authenticator.authenticate(bot.robot.name, bot.secret) is None
    assert services.authenticator.authenticate("dev", pat) is None
    monkeypatch.setattr(services.users, "login_record", lambda *a, **k: None)
    assert services.authenticator.authenticate("dev", PASSWORD) is None


def test_the_policy_reads_robot_scopes_from_the_robot_service(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.projects.create("team")
    bot = services.robots.create("bot", {"team": ["pull", "push"]})
    robot = login(services, bot.robot.name, bot.secret)
    assert services.policy.grant(robot, [scope("team/app", "pull", "push")]) == [scope("team/app", "pull", "push")]
    assert [p.name for p in services.policy.visible_projects(robot)] == ["team"]
    monkeypatch.setattr(services.robots, "actions_in", lambda conn, name, project_id: ["pull"])
    monkeypatch.setattr(services.robots, "project_names", lambda conn, name: set())
    assert services.policy.grant(robot, [scope("team/app", "pull", "push")]) == [scope("team/app", "pull")]
    assert services.policy.visible_projects(robot) == []


def test_deleting_a_user_drops_its_grants_through_the_project_service(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.projects.create("team")
    for name in ("gone", "kept"):
        services.users.create(name, PASSWORD)
        services.projects.set_member("team", "user", name, permissions.Role.GUEST)
    services.users.delete("gone")
    assert [m.principal for m in services.projects.members("team")] == ["kept"]
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(services.projects, "remove_principal", lambda conn, kind, who: calls.append((kind, who)))
    services.users.delete("kept")
    assert calls == [("user", "kept")]
    assert [m.principal for m in services.projects.members("team")] == ["kept"]  # only the service removes


class _Directory:
    """Stands in for the LDAP server (slapd-backed tests in test_ldap.py skip where it is missing)."""

    def __init__(self) -> None:
        self.groups = ["devs"]
        self.asked = 0

    def authenticate(self, username: str, password: str) -> LdapUser | None:
        self.asked += 1
        return LdapUser(username, f"uid={username}", f"{username}@x", self.groups) if password == PASSWORD else None


def test_a_directory_login_records_the_user_through_the_user_service(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _Directory()
    monkeypatch.setattr(services.authenticator, "ldap", directory)
    first = services.authenticator.authenticate("carol", PASSWORD, fresh=True)
    assert first is not None and first.provider == "ldap" and first.groups == {"devs"}
    user = services.users.get("carol")
    assert user.provider == "ldap" and user.last_login_at is not None and user.uid == first.uid
    # A Basic login repeated on /v2 may use the short verification cache: the directory is not asked again.
    assert services.authenticator.authenticate("carol", PASSWORD) == first
    assert directory.asked == 1
    # At the token endpoint the directory is asked afresh, and new groups apply at once.
    directory.groups = ["ops"]
    again = services.authenticator.authenticate("carol", PASSWORD, fresh=True)
    assert again is not None and again.groups == {"ops"} and directory.asked == 2
    assert services.authenticator.authenticate("carol", "wrong-password", fresh=True) is None
    services.users.update("carol", disabled=True)
    assert services.authenticator.authenticate("carol", PASSWORD, fresh=True) is None
