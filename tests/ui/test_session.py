"""The sign-in form, the session cookie and its timeouts, CSRF, security headers and escaping."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.services.audit import AuditFilter
from dockyard.ui import session as session_module
from dockyard.wiring import Services
from tests.api.conftest import ADMIN_PASSWORD, Registry
from tests.ui.conftest import csrf_of, sign_in

PAYLOAD = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def _client(registry: Registry) -> TestClient:
    return TestClient(registry.http.app, base_url="http://registry.test")


def test_sign_in_sets_a_locked_down_session_cookie(registry: Registry) -> None:
    ui = _client(registry)
    form = ui.get("/login")
    assert ">Username</label>" in form.text and ">Password</label>" in form.text and ">Sign in</button>" in form.text
    r = sign_in(ui, "admin", ADMIN_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/projects"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("dockyard_ui="))
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags
    page = ui.get("/projects")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # Sign out: the cookie goes, and the pages send to the sign-in form again.
    out = ui.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert ui.get("/projects", follow_redirects=False).status_code == 303


def test_cookie_is_secure_behind_an_https_public_url(services: Services) -> None:
    svc = services
    svc.settings = svc.settings.model_copy(update={"public_url": "https://registry.example"})
    with TestClient(create_app(svc), base_url="https://registry.test") as ui:
        r = sign_in(ui, "admin", ADMIN_PASSWORD)
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("dockyard_ui="))
        assert "secure" in cookie.lower()


def test_failed_sign_ins_are_audited_and_locked_out(registry: Registry) -> None:
    registry.services.users.create("carol", "carol-password-1")
    ui = _client(registry)
    statuses = [sign_in(ui, "carol", "wrong").status_code for _ in range(12)]
    assert statuses[0] == 401 and statuses[-1] == 429  # the login guard's lock, as for registry logins
    assert sign_in(ui, "carol", "carol-password-1").status_code == 429  # locked even with the password
    registry.services.audit.flush()
    rows, _ = registry.services.audit.query(AuditFilter(actor="carol", action="login"), 100, None)
    assert any(r["result"] == "failure" for r in rows)
    assert any(r["result"] == "denied" for r in rows)  # the lock-out


def test_sign_in_refuses_tokens_and_foreign_redirects(registry: Registry) -> None:
    ui = _client(registry)
    created = registry.services.access_tokens.create("admin", "t", None)
    assert sign_in(ui, "admin", created.secret).status_code == 401  # tokens are for clients
    form = ui.get("/login?next=//evil.example/x")
    r = ui.post(
        "/login",
        data={"csrf": csrf_of(form.text), "username": "admin", "password": ADMIN_PASSWORD, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/projects"


def test_sign_in_form_needs_its_csrf_token(registry: Registry) -> None:
    ui = _client(registry)
    r = ui.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "dockyard_ui" not in ui.cookies


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The session's clock only (the signatures keep real time)."""
    at = [time.time()]

    class Clock:
        @staticmethod
        def time() -> float:
            return at[0]

    monkeypatch.setattr(session_module, "time", Clock)
    yield at


def test_idle_and_absolute_timeouts(registry: Registry, clock: list[float]) -> None:
    s = registry.services.settings
    ui = _client(registry)
    sign_in(ui, "admin", ADMIN_PASSWORD)
    assert ui.get("/projects", follow_redirects=False).status_code == 200
    clock[0] += s.ui_session_idle_seconds + 1
    assert ui.get("/projects", follow_redirects=False).status_code == 303  # idle too long
    sign_in(ui, "admin", ADMIN_PASSWORD)
    # Busy (a request well within each idle window) but past the absolute limit: signed out.
    step = s.ui_session_idle_seconds / 2
    end = clock[0] + s.ui_session_absolute_seconds
    while clock[0] < end - step:
        clock[0] += step
        assert ui.get("/account", follow_redirects=False).status_code == 200
    clock[0] += 2 * step
    assert ui.get("/account", follow_redirects=False).status_code == 303


def test_image_values_are_escaped(registry: Registry) -> None:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Labels": {"x": PAYLOAD}, "Env": [PAYLOAD]}}
    ).encode()
    body = registry.image("xss/app", [b"layer"], config=config, annotations={"a": PAYLOAD})
    assert registry.put_manifest("xss/app", "v1", body).status_code == 201
    ui = _client(registry)
    sign_in(ui, "admin", ADMIN_PASSWORD)
    tags = ui.get("/repositories/xss/app/tags")
    assert tags.status_code == 200
    digest = registry.services.manifests.get("xss/app", "v1").digest
    page = ui.get(f"/repositories/xss/app/images/{digest}")
    assert page.status_code == 200
    assert "<script>window.__xss" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page.text
