"""Sign in (local and LDAP users through the Authenticator and its login guard) and sign out."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from dockyard.api.auth import client_ip
from dockyard.services.auth.identity import PASSWORD
from dockyard.services.errors import TooManyRequests
from dockyard.ui.session import LOGIN_CSRF_COOKIE
from dockyard.ui.web import Page, error_page, start_session


def _next(page: Page, value: str) -> str:
    # Only a path of this site: an absolute or scheme-relative URL would make an open redirect.
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/projects"


def _form(page: Page, status: int = 200, error: str = "", username: str = "") -> Response:
    token, cookie = page.ui.sessions.login_token()
    page.cookies.append((LOGIN_CSRF_COOKIE, cookie, 3600))
    response = page.render(
        "login.html",
        status=status,
        login_csrf=token,
        error=error,
        username=username,
        next=_next(page, page.query.get("next", "") or page.field("next")),
        oidc=bool(page.svc.settings.oidc_issuer),
    )
    return response


def login_form(page: Page) -> Response:
    if not page.identity.anonymous:
        return RedirectResponse(_next(page, page.query.get("next", "")), status_code=303)
    return _form(page)


def login(page: Page) -> Response:
    cookie = page.request.cookies.get(LOGIN_CSRF_COOKIE)
    if not page.ui.sessions.login_token_ok(cookie, page.field("csrf")):
        return error_page(page, 403, "The sign-in form's security token is missing or stale: reload the page.")
    username = page.field("username")
    password = str(page.form.get("password", "")) if page.form is not None else ""
    if not username or not password:
        return _form(page, 400, "Give your username and password.", username)
    request = page.request
    try:
        outcome = page.svc.authenticator.login(
            username, password, client_ip(request), request.headers.get("user-agent"), record_success=True
        )
    except TooManyRequests as exc:
        return _form(page, 429, f"Too many failed sign-ins: try again in {exc.retry_after} seconds.", username)
    identity = outcome.identity
    if identity is None or identity.method != PASSWORD or identity.uid is None:
        # Robot secrets and access tokens are for clients, not the browser; the same words for every failure.
        return _form(page, 401, "Invalid username or password.", username)
    start_session(page, identity)
    return RedirectResponse(_next(page, page.field("next")), status_code=303)


def logout(page: Page) -> Response:
    page.clear_session = True
    page.session = None
    return RedirectResponse("/login", status_code=303)
