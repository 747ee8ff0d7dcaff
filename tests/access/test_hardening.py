"""Issue 11, authentication: sessions are not registry tokens, tokens and secrets cannot mint new
credentials, nobody can lock an account out from elsewhere, deleted accounts' tokens stay dead,
and answers do not tell whether a private project or an account exists."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from dockyard.services.audit import AuditFilter
from dockyard.services.auth import authenticator as authenticator_module
from dockyard.services.auth.guard import keys_for
from dockyard.services.auth.permissions import Role
from dockyard.services.errors import TooManyRequests
from tests.api.conftest import ADMIN, ADMIN_PASSWORD, Registry, basic

REPO = "team/app"


def token_for(reg: Registry, headers: dict[str, str], scope: str) -> str:
    r = reg.http.get("/token", params={"service": "dockyard", "scope": scope}, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def push_image(reg: Registry, repo: str = REPO, tag: str = "v1") -> None:
    assert reg.put_manifest(repo, tag, reg.image(repo, [f"layer-{repo}-{tag}".encode()])).status_code == 201


def from_address(reg: Registry, address: str) -> TestClient:
    """A client of the same app that connects from another address (no lifespan of its own)."""
    return TestClient(reg.http.app, base_url="http://registry.test", client=(address, 40000))


def session_cookie(reg: Registry, username: str) -> dict[str, str]:
    """The cookie the OIDC browser login sets, for `username` (the login itself is tested in test_oidc)."""
    user = reg.services.users.get(username)
    identity = reg.services.authenticator.current(user.username, user.uid)
    assert identity is not None
    return {"Cookie": f"dockyard_session={reg.services.tokens.issue_session(identity, 600)}"}


# --- item: a session is its own kind of token -------------------------------------------------------
def test_session_cookie_works_on_the_management_api_only(registry: Registry) -> None:
    push_image(registry)
    cookie = session_cookie(registry, "admin")
    me = registry.http.get("/api/v1/me", headers=cookie)
    assert me.status_code == 200 and me.json()["subject"] == "admin"
    session = cookie["Cookie"].split("=", 1)[1]
    # Not a registry token: /v2 refuses it as a bearer token.
    r = registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(session))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    # And a registry token sent as the management API's bearer credential is refused.
    t = token_for(registry, ADMIN, f"repository:{REPO}:pull")
    r = registry.http.post("/api/v1/users", json={"username": "mallory", "password": "long-enough"}, headers=bearer(t))
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert registry.http.get("/api/v1/users/mallory", headers=ADMIN).status_code == 404


# --- item: a leaked token or secret cannot take the account over ------------------------------------
def _dev_with_pat(reg: Registry) -> tuple[dict[str, str], dict[str, str]]:
    reg.services.users.create("dev", "dev-password")
    dev = basic("dev", "dev-password")
    r = reg.http.post("/api/v1/me/tokens", json={"name": "laptop"}, headers=dev)
    assert r.status_code == 201, r.text
    return dev, basic("dev", r.json()["secret"])


def test_access_token_cannot_change_the_password_without_the_current_one(registry: Registry) -> None:
    dev, pat = _dev_with_pat(registry)
    url = "/api/v1/users/dev/password"
    assert registry.http.put(url, json={"password": "taken-over!"}, headers=pat).status_code == 403
    r = registry.http.put(url, json={"password": "taken-over!", "current_password": "guess-1234"}, headers=pat)
    assert r.status_code == 403
    # A password login needs it too (a stolen session or an unattended terminal is not the owner).
    assert registry.http.put(url, json={"password": "taken-over!"}, headers=dev).status_code == 403
    # The access token is not the current password either.
    r = registry.http.put(url, json={"password": "taken-over!", "current_password": pat_secret(pat)}, headers=pat)
    assert r.status_code == 403
    assert registry.http.get("/v2/", headers=dev).status_code == 200  # unchanged
    r = registry.http.put(url, json={"password": "new-password", "current_password": "dev-password"}, headers=dev)
    assert r.status_code == 204
    assert registry.http.get("/v2/", headers=basic("dev", "new-password")).status_code == 200
    # A system administrator sets another account's password without knowing it...
    r = registry.http.put(url, json={"password": "reset-by-admin"}, headers=ADMIN)
    assert r.status_code == 204
    # ... but changes their own like everyone else.
    r = registry.http.put("/api/v1/users/admin/password", json={"password": "another-one"}, headers=ADMIN)
    assert r.status_code == 403
    r = registry.http.put(
        "/api/v1/users/admin/password",
        json={"password": "another-one", "current_password": ADMIN_PASSWORD},
        headers=ADMIN,
    )
    assert r.status_code == 204


def pat_secret(headers: dict[str, str]) -> str:
    import base64

    return base64.b64decode(headers["Authorization"][6:]).decode().split(":", 1)[1]


def test_access_token_robot_and_cli_secrets_cannot_mint_credentials(registry: Registry) -> None:
    dev, pat = _dev_with_pat(registry)
    r = registry.http.post("/api/v1/me/tokens", json={"name": "persist"}, headers=pat)
    assert r.status_code == 403, r.text
    assert [t["name"] for t in registry.http.get("/api/v1/me/tokens", headers=dev).json()] == ["laptop"]
    # Revoking the leaked token therefore ends the access.
    assert registry.http.delete("/api/v1/me/tokens/laptop", headers=pat).status_code == 204
    assert registry.http.get("/v2/", headers=pat).status_code == 401
    # Robots.
    registry.services.projects.create("team", creator="admin")
    robot = registry.services.robots.create("ci", {"team": ["pull"]})
    creds = basic(robot.robot.name, robot.secret)
    assert registry.http.post("/api/v1/me/tokens", json={"name": "x"}, headers=creds).status_code == 403
    assert registry.http.post("/api/v1/me/cli-secret", headers=creds).status_code == 403
    # An OIDC user's CLI secret: a registry password, not a way to make more secrets or tokens.
    with registry.services.db.write() as conn:
        registry.services.users.upsert_external(conn, "olivia", "oidc", None, [])
    cli = basic("olivia", registry.services.users.new_cli_secret("olivia"))
    assert registry.http.get("/v2/", headers=cli).status_code == 200
    assert registry.http.post("/api/v1/me/cli-secret", headers=cli).status_code == 403
    assert registry.http.post("/api/v1/me/tokens", json={"name": "x"}, headers=cli).status_code == 403
    # The browser session (after an OIDC login) may.
    session = session_cookie(registry, "olivia")
    assert registry.http.post("/api/v1/me/cli-secret", headers=session).status_code == 200
    assert registry.http.post("/api/v1/me/tokens", json={"name": "ui"}, headers=session).status_code == 201


# --- item: nobody locks an account out from elsewhere -------------------------------------------------
def _barely_slowed(reg: Registry) -> None:
    """The default thresholds, but a slow-down capped at a millisecond: ten failures would otherwise
    sleep 0.25 + 0.5 + ... + 4 s before their answers. These tests are about who gets locked where;
    the slow-down itself is tested in test_identities and test_login_settings."""
    guard = reg.services.authenticator.guard
    guard.settings = dataclasses.replace(guard.settings, max_delay_seconds=0.001)


def _fail(client: TestClient | httpx.Client, user: str, times: int) -> list[int]:
    return [client.get("/token", headers=basic(user, "wrong-password")).status_code for _ in range(times)]


@pytest.mark.parametrize("kind", ["admin", "robot"])
def test_failures_from_one_address_do_not_lock_the_account_elsewhere(registry: Registry, kind: str) -> None:
    _barely_slowed(registry)
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    if kind == "admin":
        name, good = "admin", ADMIN
    else:
        created = registry.services.robots.create("ci", {"team": ["pull"]})
        name, good = created.robot.name, basic(created.robot.name, created.secret)
    attacker = from_address(registry, "203.0.113.66")
    assert _fail(attacker, name, 10) == [401] * 10
    # From the attacker's address the account is locked, right secret or not...
    r = attacker.get("/token", headers=good)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # ... and from every other address it works, on /token, /v2 and /api/v1.
    owner = from_address(registry, "198.51.100.7")
    assert owner.get("/token", headers=good).status_code == 200
    assert owner.get(f"/v2/{REPO}/manifests/v1", headers=good).status_code == 200
    me = owner.get("/api/v1/me", headers=good)
    assert me.status_code == 200 and me.json()["subject"] == name


def test_account_wide_failures_slow_down_but_never_refuse_the_right_password(registry: Registry) -> None:
    guard = registry.services.authenticator.guard
    guard.settings = type(guard.settings)(slow_after=2, lock_after=3, max_delay_seconds=0.01)
    # One failure each from many addresses: far past the per-account lock threshold in total.
    delays = [guard.failed(keys_for(f"192.0.2.{i}", "admin"))[0] for i in range(1, 13)]
    assert delays[0] == 0 and delays[-1] > 0  # the account-wide count slows failure answers...
    owner = from_address(registry, "198.51.100.7")
    assert owner.get("/token", headers=ADMIN).status_code == 200  # ... but refuses no one


def test_refused_attempts_are_counted_not_each_audited_and_unlock_clears_the_lock(registry: Registry) -> None:
    _barely_slowed(registry)
    registry.services.users.create("dev", "dev-password")
    attacker = from_address(registry, "203.0.113.66")
    assert _fail(attacker, "dev", 10) == [401] * 10
    assert _fail(attacker, "dev", 5) == [429] * 5
    assert attacker.get("/v2/", headers=basic("dev", "dev-password")).status_code == 429
    registry.services.audit.flush()
    rows, _ = registry.services.audit.query(AuditFilter(actor="dev"), 100)
    actions = [(r["action"], r["result"]) for r in rows]
    assert actions.count(("login", "failure")) == 10
    assert actions.count(("login.lockout", "denied")) == 1
    assert actions.count(("login", "denied")) == 1  # six refusals, one event
    # Only a system administrator may unlock, through the API...
    dev_elsewhere = from_address(registry, "198.51.100.7")
    r = dev_elsewhere.post("/api/v1/users/dev/unlock", headers=basic("dev", "dev-password"))
    assert r.status_code == 403
    r = registry.http.post("/api/v1/users/dev/unlock", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {"locks": 1, "refused": 6}
    assert attacker.get("/token", headers=basic("dev", "dev-password")).status_code == 200
    assert registry.http.post("/api/v1/users/nobody/unlock", headers=ADMIN).status_code == 404
    rows, _ = registry.services.audit.query(AuditFilter(action="user.unlock"), 10)
    assert [(r["reference"], r["detail"]) for r in rows] == [("dev", {"locks": 1, "refused": 6})]


def test_cli_unlock(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dockyard.cli import app
    from dockyard.config import Settings
    from dockyard.wiring import build_services, prepare

    monkeypatch.setenv("DOCKYARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DOCKYARD_ADMIN_PASSWORD", "admin-password")
    svc = build_services(Settings(data_dir=tmp_path, admin_password="admin-password"))
    try:
        prepare(svc)
        for _ in range(10):
            svc.authenticator.login("admin", "wrong", "203.0.113.66")
        with pytest.raises(TooManyRequests):
            svc.authenticator.login("admin", "admin-password", "203.0.113.66")
        result = CliRunner().invoke(app, ["user", "unlock", "admin"])
        assert result.exit_code == 0, result.output
        assert "unlocked admin" in result.output
        assert svc.authenticator.login("admin", "admin-password", "203.0.113.66").identity is not None
        assert CliRunner().invoke(app, ["user", "unlock", "nobody"]).exit_code == 1
    finally:
        svc.close()


# --- item: a deleted account's tokens stay dead when the name is reused ------------------------------
def test_deleted_robots_token_does_not_work_for_a_new_robot_of_the_same_name(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    first = registry.services.robots.create("ci", {"team": ["pull"]})
    t = token_for(registry, basic(first.robot.name, first.secret), f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(t)).status_code == 200
    assert registry.http.delete("/api/v1/robots/robot$ci", headers=ADMIN).status_code == 204
    second = registry.services.robots.create("ci", {"team": ["pull"]})
    assert second.robot.name == first.robot.name
    r = registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(t))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    fresh = token_for(registry, basic(second.robot.name, second.secret), f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(fresh)).status_code == 200
    claims = jwt.decode(fresh, options={"verify_signature": False})
    assert claims["uid"] != jwt.decode(t, options={"verify_signature": False})["uid"]


def test_deleted_users_token_does_not_work_for_a_new_user_of_the_same_name(registry: Registry) -> None:
    registry.services.projects.create("team", creator="admin")
    push_image(registry)
    registry.services.users.create("alice", "alice-password")
    registry.services.projects.set_member("team", "user", "alice", Role.DEVELOPER)
    t = token_for(registry, basic("alice", "alice-password"), f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(t)).status_code == 200
    assert registry.http.delete("/api/v1/users/alice", headers=ADMIN).status_code == 204
    registry.services.users.create("alice", "alice-password")
    registry.services.projects.set_member("team", "user", "alice", Role.DEVELOPER)
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(t)).status_code == 401
    fresh = token_for(registry, basic("alice", "alice-password"), f"repository:{REPO}:pull")
    assert registry.http.get(f"/v2/{REPO}/manifests/v1", headers=bearer(fresh)).status_code == 200


def test_deleted_users_session_does_not_work_for_a_new_user_of_the_same_name(registry: Registry) -> None:
    registry.services.users.create("alice", "alice-password")
    cookie = session_cookie(registry, "alice")
    assert registry.http.get("/api/v1/me", headers=cookie).status_code == 200
    assert registry.http.delete("/api/v1/users/alice", headers=ADMIN).status_code == 204
    registry.services.users.create("alice", "alice-password")
    assert registry.http.get("/api/v1/me", headers=cookie).status_code == 401


# --- item: no existence leaks ----------------------------------------------------------------------
def test_private_and_missing_projects_get_the_same_answer(registry: Registry) -> None:
    registry.services.projects.create("priv", creator="admin")
    push_image(registry, "priv/app")
    registry.services.users.create("outsider", "outsider-password")
    outsider = basic("outsider", "outsider-password")

    def answers(project: str) -> list[tuple[int, str]]:
        out = []
        for method, path in (
            ("GET", f"/v2/{project}/app/manifests/v1"),
            ("GET", f"/v2/{project}/app/tags/list"),
            ("POST", f"/v2/{project}/app/blobs/uploads/"),
            ("DELETE", f"/v2/{project}/app/manifests/v1"),
        ):
            for headers in (outsider, bearer(token_for(registry, outsider, f"repository:{project}/app:pull,push"))):
                r = registry.http.request(method, path, headers=headers)
                out.append((r.status_code, r.text.replace(project, "<p>")))
        t = token_for(registry, outsider, f"repository:{project}/app:pull,push,delete")
        out.append((200, str(jwt.decode(t, options={"verify_signature": False})["access"])))
        return out

    assert answers("priv") == answers("nonexist")
    assert all(status in (200, 403) for status, _ in answers("priv"))


def _recording_verifications(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each argon2 verification: against a user's own hash ("real") or any other ("dummy")."""
    with reg.services.db.read() as conn:
        own = set(conn.exec_driver_sql("SELECT password_hash FROM users WHERE password_hash IS NOT NULL").scalars())
    calls: list[str] = []
    real: Callable[[str, str], bool] = authenticator_module.verify_password

    def record(stored: str, password: str) -> bool:
        calls.append("real" if stored in own else "dummy")
        return real(stored, password)

    monkeypatch.setattr(authenticator_module, "verify_password", record)
    return calls


def test_unknown_or_disabled_users_cost_one_password_verification(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.services.users.create("dev", "dev-password")
    registry.services.users.create("gone", "gone-password")
    registry.services.users.update("gone", disabled=True)
    with registry.services.db.write() as conn:
        registry.services.users.upsert_external(conn, "olivia", "oidc", None, [])
    calls = _recording_verifications(registry, monkeypatch)
    for user, expected in (
        ("nobody", ["dummy"]),
        ("dev", ["real"]),  # a wrong password
        ("gone", ["dummy"]),  # disabled (its own hash is not even looked at)
        ("olivia", ["dummy"]),  # an OIDC user, wrong CLI secret
    ):
        calls.clear()
        r = registry.http.get("/token", headers=basic(user, "wrong-password"))
        assert r.status_code == 401 and r.json() == {
            "errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password", "detail": {}}]
        }
        assert calls == expected, user
