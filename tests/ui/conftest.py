"""Fixtures for the web UI's tests: signing in through the sign-in form, as each kind of principal."""

from __future__ import annotations

import base64
import re

import httpx
from starlette.testclient import TestClient

from tests.access.conftest import PROJECT, Principal, make_principals, principals  # noqa: F401 - fixtures
from tests.api.conftest import registry, services  # noqa: F401 - fixtures

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def credentials(p: Principal) -> tuple[str, str]:
    username, _, password = base64.b64decode(p.headers["Authorization"][6:]).decode().partition(":")
    return username, password


def sign_in(client: TestClient, username: str, password: str) -> httpx.Response:
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/login",
        data={"csrf": csrf_of(form.text), "username": username, "password": password, "next": "/projects"},
        follow_redirects=False,
    )


def humans(everyone: list[Principal]) -> list[Principal]:
    """The principals who can sign in to the UI: users (robots cannot, anonymous is not signed in)."""
    return [p for p in everyone if p.robot_actions is None and not p.anonymous]


def browser(client: TestClient, p: Principal) -> TestClient:
    """`client`'s app, as `p` signed in through the form (anonymous: not signed in)."""
    ui = TestClient(client.app, base_url="http://registry.test")
    if not p.anonymous:
        username, password = credentials(p)
        r = sign_in(ui, username, password)
        if p.robot_actions is None:
            assert r.status_code == 303, r.text
    return ui
