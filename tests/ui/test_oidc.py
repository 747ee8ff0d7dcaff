"""Single sign-on from the UI: the sign-in page's OIDC button, the provider, back to a UI session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from dockyard.db.engine import Database
from tests.access.test_ldap import make_registry
from tests.api.conftest import Registry, basic
from tests.support.oidc_provider import OidcProvider
from tests.ui.conftest import csrf_of


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
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


def _through_provider(reg: Registry, start_url: str) -> httpx.Response:
    start = reg.http.get(start_url, follow_redirects=False)
    assert start.status_code == 302, start.text
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302, at_provider.text
    back = urlparse(at_provider.headers["location"])
    return reg.http.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_sign_in_with_oidc_starts_a_ui_session(oidc_registry: Registry) -> None:
    reg = oidc_registry
    page = reg.http.get("/login?next=/account")
    assert "Sign in with single sign-on" in page.text
    assert 'href="/auth/oidc/login?ui_next=%2Faccount"' in page.text
    back = _through_provider(reg, "/auth/oidc/login?ui_next=%2Faccount")
    assert back.status_code == 303 and back.headers["location"] == "/account"
    account = reg.http.get("/account")
    assert account.status_code == 200 and "alice" in account.text and "New CLI secret" in account.text
    made = reg.http.post("/account/cli-secret", data={"csrf": csrf_of(account.text)})
    assert made.status_code == 201
    secret = made.text.split('id="cli-secret"')[0].rsplit('value="', 1)[1].split('"', 1)[0]
    assert secret.startswith("dyc_")
    t = reg.http.get("/token", params={"service": "dockyard"}, headers=basic("alice", secret))
    assert t.status_code == 200, t.text


def test_oidc_without_the_ui_or_to_another_site_answers_json(oidc_registry: Registry) -> None:
    reg = oidc_registry
    for start in ("/auth/oidc/login", "/auth/oidc/login?ui_next=//evil.example/x"):
        reg.http.cookies.clear()
        r = _through_provider(reg, start)
        assert r.status_code == 200 and r.json()["username"] == "alice", start
        assert "dockyard_ui" not in reg.http.cookies
