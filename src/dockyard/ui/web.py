"""What every page shares: who is asking (the session), CSRF on every form, templates, error pages.

A view is a plain function of a `Page` run in a worker thread (services block); `view()` wraps it
into a Starlette endpoint. Views hold no rules of their own: they call the management API's own
operations or the services with the same checks (api/management/deps.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dockyard.api.auth import client_ip
from dockyard.api.errors import status_for
from dockyard.services.audit import Actor, set_actor
from dockyard.services.auth.identity import ANONYMOUS, SESSION, Identity
from dockyard.services.auth.permissions import SystemPermission
from dockyard.services.errors import RegistryError, Unauthorized
from dockyard.services.registry.browse import BrowseService
from dockyard.ui.session import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, SessionCodec, csrf_ok
from dockyard.wiring import Services

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    # No inline script or style anywhere: everything comes from /static.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    exp = min(int(math.log(n, 1024)), len(units))
    return f"{n / 1024**exp:.1f} {units[exp - 1]}"


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _short(digest: str | None) -> str:
    if not digest:
        return "—"
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: image data is hostile
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=_size, when=_when, short=_short, path=lambda v: quote(str(v), safe="/"))
    return env


@dataclass
class Ui:
    """The UI's shared parts, built once on its first request."""

    services: Services
    env: jinja2.Environment
    sessions: SessionCodec
    browse: BrowseService


@dataclass
class Page:
    request: Request
    ui: Ui
    identity: Identity
    session: Session | None
    form: FormData | None
    cookies: list[tuple[str, str, int]] = field(default_factory=list)  # to set on the response
    clear_session: bool = False

    @property
    def svc(self) -> Services:
        return self.ui.services

    @property
    def query(self) -> Any:
        return self.request.query_params

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def is_admin(self) -> bool:
        return self.svc.policy.can_system(self.identity, SystemPermission.ALL_PROJECTS)

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        ctx = {
            "me": self.identity,
            "csrf": self.session.csrf if self.session else "",
            "is_admin": self.is_admin(),
            "path": self.request.url.path,
            "qs": lambda **kw: urlencode({k: v for k, v in kw.items() if v not in (None, "")}),
            **values,
        }
        html = self.ui.env.get_template(template).render(ctx)
        return HTMLResponse(html, status_code=status)


View = Callable[[Page], Response]


def _identity(ui: Ui, session: Session) -> Identity | None:
    identity = ui.services.authenticator.current(session.subject, session.uid)
    return None if identity is None else replace(identity, method=SESSION)


def error_page(page: Page, status: int, message: str) -> HTMLResponse:
    return page.render("error.html", status=status, status_code=status, message=message)


def view(
    ui_getter: Callable[[Request], Ui], func: View, signed_in: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for `func`: the session read (and its idle clock moved), CSRF checked on every
    POST, the actor set for the audit log, service errors shown as error pages."""

    async def endpoint(request: Request) -> Response:
        ui = ui_getter(request)
        form = await request.form() if request.method == "POST" else None
        raw = request.cookies.get(SESSION_COOKIE)
        session = ui.sessions.decode(raw) if raw else None
        identity: Identity = ANONYMOUS
        if session is not None:
            found = await run_in_threadpool(_identity, ui, session)
            if found is None:
                session = None
            else:
                identity = found
        set_actor(Actor.of(identity, client_ip(request), request.headers.get("user-agent")))
        page = Page(request, ui, identity, session, form)
        response = await run_in_threadpool(_run, page, func, signed_in, raw is not None)
        return _finish(page, response)

    return endpoint


def _run(page: Page, func: View, signed_in: bool, had_cookie: bool) -> Response:
    request = page.request
    # Views open to anyone (the sign-in form) check their own CSRF token: there is no session yet.
    if signed_in and page.form is not None:
        if page.session is None:
            return error_page(page, 403, "Your session has ended: sign in again.")
        if not csrf_ok(page.session, page.field("csrf")):
            return error_page(
                page, 403, "The form's security token is missing or stale: reload the page and try again."
            )
    if signed_in and page.identity.anonymous:
        page.clear_session = had_cookie
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
    try:
        return func(page)
    except Unauthorized as exc:
        return error_page(page, 401, exc.message)
    except RegistryError as exc:
        return error_page(page, status_for(exc), exc.message)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error_page(page, 400, "; ".join(parts) or "invalid input")


def _finish(page: Page, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    secure = page.ui.sessions.secure
    for name, value, max_age in page.cookies:
        path = "/login" if name == LOGIN_CSRF_COOKIE else "/"
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path=path)
    if page.clear_session:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure)
    elif page.session is not None and not any(c[0] == SESSION_COOKIE for c in page.cookies):
        moved = page.ui.sessions.touched(page.session)
        if moved is not None:
            response.set_cookie(
                SESSION_COOKIE,
                page.ui.sessions.encode(moved),
                max_age=page.ui.sessions.max_age(moved),
                httponly=True,
                samesite="lax",
                secure=secure,
                path="/",
            )
    return response


def start_session(page: Page, identity: Identity) -> None:
    assert identity.uid is not None
    session = page.ui.sessions.new(identity.subject, identity.uid)
    page.cookies.append((SESSION_COOKIE, page.ui.sessions.encode(session), page.ui.sessions.max_age(session)))
