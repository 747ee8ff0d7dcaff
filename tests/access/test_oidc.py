"""OIDC login against a real authorization server over HTTP, then registry logins with the CLI secret."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.services.auth.oidc import OIDC_TIMEOUT
from dockyard.services.auth.permissions import Role
from dockyard.wiring import build_services, http_client, prepare
from tests.access.test_ldap import make_registry
from tests.api.conftest import ADMIN, Registry, basic, make_settings
from tests.support.http import TIMEOUT
from tests.support.oidc_provider import OidcProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    # Strict, as real providers are: PKCE and a nonce are required, and the verifier's length is checked.
    with OidcProvider(require_pkce=True, require_nonce=True) as p:
        yield p


@pytest.fixture
def oidc_registry(tmp_path: Path, database: Database, provider: OidcProvider) -> Iterator[Registry]:
    provider.reset_faults()
    provider.login_as("alice")
    yield from make_registry(
        tmp_path,
        database,
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_client_secret=provider.client_secret,
    )


def browser_login(reg: Registry, state_override: str | None = None) -> httpx.Response:
    """What a browser does: registry → provider (signed-in user approves) → registry callback."""
    reg.http.cookies.clear()
    start = reg.http.get("/auth/oidc/login", follow_redirects=False)
    assert start.status_code == 302, start.text
    at_provider = httpx.get(start.headers["location"], follow_redirects=False, timeout=TIMEOUT)
    assert at_provider.status_code == 302, at_provider.text
    back = urlparse(at_provider.headers["location"])
    assert back.path == "/auth/oidc/callback"
    query = back.query
    if state_override is not None:
        query = query.rsplit("state=", 1)[0] + f"state={state_override}"
    return reg.http.get(f"/auth/oidc/callback?{query}")


def test_login_then_registry_access_with_cli_secret(oidc_registry: Registry, provider: OidcProvider) -> None:
    reg = oidc_registry
    reg.services.projects.create("team-a", creator="admin")
    reg.services.projects.set_member("team-a", "group", "team-a-devs", Role.DEVELOPER)
    r = browser_login(reg)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == "alice" and body["groups"] == ["team-a-devs"]
    secret = body["cli_secret"]
    assert secret.startswith("dyc_")
    # The session cookie works for the management API.
    me = reg.http.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["provider"] == "oidc", me.text
    # The CLI secret is the registry password; group grants apply.
    t = reg.http.get(
        "/token",
        params={"service": "dockyard", "scope": "repository:team-a/app:pull,push,delete"},
        headers=basic("alice", secret),
    )
    assert t.status_code == 200, t.text
    access = jwt.decode(t.json()["token"], options={"verify_signature": False})["access"]
    assert sorted(access[0]["actions"]) == ["pull", "push"]
    # A second login does not show (or change) the secret; a new one can be made, and the old one dies.
    again = browser_login(reg).json()
    assert again["cli_secret"] is None
    fresh = reg.http.post("/api/v1/me/cli-secret").json()["secret"]
    assert reg.http.get("/token", headers=basic("alice", secret)).status_code == 401
    assert reg.http.get("/token", headers=basic("alice", fresh)).status_code == 200
    user = reg.http.get("/api/v1/users/alice", headers=ADMIN).json()
    assert user["provider"] == "oidc" and user["email"] == "alice@dockyard.test"
    events = reg.http.get("/api/v1/audit", params={"actor": "alice", "action": "login"}, headers=ADMIN).json()
    assert any(e["detail"] == {"provider": "oidc"} for e in events["events"])


@pytest.mark.parametrize("fault", ["foreign_key", "expired", "wrong_nonce", "wrong_audience", "wrong_issuer"])
def test_bad_id_tokens_are_refused(oidc_registry: Registry, provider: OidcProvider, fault: str) -> None:
    setattr(provider.faults, fault, True)
    r = browser_login(oidc_registry)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["code"] == "OIDC_FAILED"
    assert oidc_registry.http.get("/api/v1/users/alice", headers=ADMIN).status_code == 404


def test_forged_state_and_disabled_users_are_refused(oidc_registry: Registry, provider: OidcProvider) -> None:
    r = browser_login(oidc_registry, state_override="forged")
    assert r.status_code == 401 and "state" in r.json()["detail"]
    provider.login_as("bob")
    assert browser_login(oidc_registry).status_code == 200
    oidc_registry.http.patch("/api/v1/users/bob", json={"disabled": True}, headers=ADMIN)
    r = browser_login(oidc_registry)
    assert r.status_code == 401 and "disabled" in r.json()["detail"]


def test_the_provider_is_called_through_the_injected_http_client(tmp_path: Path, database: Database) -> None:
    issuer = "https://idp.test"
    seen: list[httpx.Request] = []

    def idp(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        doc = {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token",
               "jwks_uri": f"{issuer}/jwks"}  # fmt: skip
        return httpx.Response(200, json=doc)

    settings = make_settings(tmp_path, database).model_copy(
        update={"oidc_issuer": issuer, "oidc_client_id": "dockyard", "oidc_client_secret": "s3cret"}
    )
    svc = build_services(settings, db=database, http=http_client(transport=httpx.MockTransport(idp)))
    prepare(svc)
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        start = client.get("/auth/oidc/login", follow_redirects=False)
    svc.close()
    assert start.status_code == 302 and start.headers["location"].startswith(f"{issuer}/authorize?")
    assert [str(r.url) for r in seen] == [f"{issuer}/.well-known/openid-configuration"]
    assert seen[0].headers["user-agent"].startswith("dockyard/")
    assert seen[0].extensions["timeout"]["read"] == OIDC_TIMEOUT  # a login waits: the provider's own timeout


def test_a_provider_not_to_be_verified_gets_one_unverified_client(tmp_path: Path, database: Database) -> None:
    svc = build_services(make_settings(tmp_path, database), db=database)
    unverified = svc.http_for(False)  # oidc_verify_tls = false: httpx verifies per client
    assert svc.http_for(True) is svc.http and unverified is not svc.http and svc.http_for(False) is unverified
    assert unverified._transport._pool._ssl_context.verify_mode == ssl.CERT_NONE  # type: ignore[attr-defined]
    assert unverified.headers["user-agent"] == svc.http.headers["user-agent"]  # built like the process's client
    svc.close()
    assert unverified.is_closed
