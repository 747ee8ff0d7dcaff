"""LDAP login against a real OpenLDAP server: users, group grants, TLS options, disabled users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.services.auth.permissions import Role
from dockyard.wiring import build_services, prepare
from tests.api.conftest import ADMIN, Registry, basic, make_settings
from tests.support.slapd import SlapdServer


def ldap_settings(slapd: SlapdServer, **overrides: Any) -> dict[str, Any]:
    return {
        "ldap_url": slapd.url,
        "ldap_bind_dn": slapd.service_dn,
        "ldap_bind_password": slapd.service_password,
        "ldap_user_base": slapd.people_dn,
        "ldap_group_base": slapd.groups_dn,
        **overrides,
    }


def make_registry(tmp_path: Path, database: Database, **settings: Any) -> Iterator[Registry]:
    base = make_settings(tmp_path, database)
    svc = build_services(base.model_copy(update=settings), db=database)
    prepare(svc)
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        yield Registry(client, svc)


@pytest.fixture
def ldap_registry(tmp_path: Path, database: Database, slapd: SlapdServer) -> Iterator[Registry]:
    yield from make_registry(tmp_path, database, **ldap_settings(slapd))


def granted(reg: Registry, user: str, password: str, scope: str) -> list[str] | None:
    r = reg.http.get("/token", params={"service": "dockyard", "scope": scope}, headers=basic(user, password))
    if r.status_code == 401:
        return None
    assert r.status_code == 200, r.text
    access = jwt.decode(r.json()["token"], options={"verify_signature": False})["access"]
    return sorted(access[0]["actions"]) if access else []


def test_ldap_users_and_group_grants(ldap_registry: Registry, slapd: SlapdServer) -> None:
    reg = ldap_registry
    reg.services.projects.create("team-a", creator="admin")
    reg.services.projects.set_member("team-a", "group", "team-a-devs", Role.DEVELOPER)
    reg.services.projects.set_member("team-a", "group", "team-a-admins", Role.ADMIN)
    scope = "repository:team-a/app:pull,push,delete"
    assert granted(reg, "alice", "alice-pass", scope) == ["pull", "push"]
    assert granted(reg, "bob", "bob-pass", scope) == ["delete", "pull", "push"]
    assert granted(reg, "carol", "carol-pass", scope) == []
    alice = reg.http.get("/api/v1/users/alice", headers=ADMIN).json()
    assert alice["provider"] == "ldap" and alice["groups"] == ["team-a-devs"]
    assert alice["email"] == "alice@dockyard.test"
    # Wrong, empty and unknown credentials; an LDAP user's password is never stored here.
    assert granted(reg, "alice", "wrong", scope) is None
    assert granted(reg, "alice", "", scope) is None
    assert granted(reg, "mallory", "alice-pass", scope) is None
    with reg.services.db.read() as conn:
        assert conn.exec_driver_sql("SELECT password_hash FROM users WHERE username = 'alice'").scalar() is None
    # A change of groups in the directory applies at the next login.
    slapd.add_to_group("team-a-admins", "alice")
    try:
        assert granted(reg, "alice", "alice-pass", scope) == ["delete", "pull", "push"]
    finally:
        slapd.remove_from_group("team-a-admins", "alice")
    assert granted(reg, "alice", "alice-pass", scope) == ["pull", "push"]
    # A user added to the directory can log in at once; the management API sees them as LDAP users.
    slapd.add_user("dave", "dave-pass")
    try:
        assert granted(reg, "dave", "dave-pass", scope) == []
        assert reg.http.get("/api/v1/me", headers=basic("dave", "dave-pass")).json()["provider"] == "ldap"
    finally:
        slapd.delete_user("dave")
    assert granted(reg, "dave", "dave-pass", scope) is None


def test_disabled_ldap_user_is_refused_even_with_the_right_password(ldap_registry: Registry) -> None:
    reg = ldap_registry
    assert granted(reg, "alice", "alice-pass", "repository:x/y:pull") == []
    assert reg.http.patch("/api/v1/users/alice", json={"disabled": True}, headers=ADMIN).status_code == 200
    assert granted(reg, "alice", "alice-pass", "repository:x/y:pull") is None
    # And an LDAP user's password cannot be set here.
    r = reg.http.put("/api/v1/users/alice/password", json={"password": "new-password"}, headers=ADMIN)
    assert r.status_code == 400 and "ldap" in r.json()["detail"]


def test_local_users_still_log_in_with_ldap_on(ldap_registry: Registry) -> None:
    ldap_registry.services.users.create("local", "local-password")
    assert granted(ldap_registry, "local", "local-password", "repository:x/y:pull") == []
    assert granted(ldap_registry, "admin", "s3cret-admin", "repository:x/y:pull") == ["pull"]


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_tls_options(tmp_path: Path, database: Database, slapd: SlapdServer, mode: str) -> None:
    url = slapd.url if mode == "starttls" else slapd.ldaps_url
    tls = {"ldap_url": url, "ldap_start_tls": mode == "starttls"}
    # Verified against the test CA: works.
    for reg in make_registry(tmp_path / "ok", database, **ldap_settings(slapd, **tls, ldap_ca_file=slapd.ca_cert_path)):
        assert granted(reg, "alice", "alice-pass", "repository:x/y:pull") == []
    # The same server without trusting its CA: refused, as a login failure, not a crash.
    for reg in make_registry(tmp_path / "untrusted", database, **ldap_settings(slapd, **tls)):
        assert granted(reg, "bob", "bob-pass", "repository:x/y:pull") is None


def test_wrong_service_account_fails_closed(tmp_path: Path, database: Database, slapd: SlapdServer) -> None:
    for reg in make_registry(tmp_path, database, **ldap_settings(slapd, ldap_bind_password="wrong")):
        assert granted(reg, "alice", "alice-pass", "repository:x/y:pull") is None
