"""The ASGI application: routes, error mapping, metrics. Built from settings or ready services."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.api import admission, health, oidc, token
from dockyard.api.distribution.routes import routes as distribution_routes
from dockyard.api.errors import allowed_methods, error_body, registry_error_handler
from dockyard.api.metrics import MetricsMiddleware, metrics_endpoint
from dockyard.api.middleware import BodyTimeout, ErrorBoundary
from dockyard.api.problem import problem
from dockyard.config import load_settings
from dockyard.logs import configure, get_logger
from dockyard.services.errors import RegistryError
from dockyard.wiring import Services, build_services, maintenance


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        body = error_body("UNSUPPORTED", f"method {request.method} not allowed here")
        headers["Allow"] = ", ".join(allowed_methods(request.app.router.routes, request.scope))
    else:
        body = error_body("NOT_FOUND" if exc.status_code == 404 else "UNKNOWN", str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


class _Mount(Mount):
    """Starlette's Mount matches `<prefix>/.*` without DOTALL, so a path with an encoded newline
    (`/api/v1/projects/a%0Ab`) would miss the mounted app and get the registry's 404 instead of the
    management API's own answer (problem+json)."""

    def __init__(self, path: str, app: ASGIApp) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


class _Management:
    """The management API (FastAPI, its models and OpenAPI), built on its first request: a worker that
    only serves /v2/ never imports it (about 10 MiB per worker; tests/unit/test_lazy_imports.py)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:  # no await before the assignment: one event loop builds it once
            from dockyard.api.management.app import create_management_app

            self.app = create_management_app(self.services)
        await self.app(scope, receive, send)


class _Ui:
    """The web UI (Jinja2 templates and its views), built on its first request like the management
    API, so a worker that only serves /v2/ never imports it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:  # no await before the assignment: one event loop builds it once
            from dockyard.ui.app import create_ui_app

            self.app = create_ui_app(self.services)
        await self.app(scope, receive, send)


# The first path segments the UI answers (dockyard/ui/app.py PREFIXES; here so matching needs no import).
UI_PREFIXES = frozenset(
    {"", "login", "logout", "projects", "repositories", "security", "audit", "admin", "account", "static"}
)


class _UiMount(Mount):
    """The UI at /, for its own first segments only: other paths keep the registry's answers (its
    JSON 404 and the Allow header of a 405)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__("", app=app)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["path"].split("/", 2)[1] not in UI_PREFIXES:
            return Match.NONE, {}
        return super().matches(scope)


def _internal_error() -> Response:
    # A bug, not bad input (ErrorBoundary logged it): answer in the spec's error shape.
    return JSONResponse(error_body("UNKNOWN", "internal server error"), status_code=500)


def _body_timeout(scope: Scope) -> Response:
    message, headers = "timed out waiting for the request body", {"Connection": "close"}
    if scope["path"].startswith("/api/"):
        return problem(408, "request timeout", message, "TIMEOUT", headers)
    return JSONResponse(error_body("UNKNOWN", message), status_code=408, headers=headers)


def _lifespan(services: Services) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.audit.start()
        # background_duties = false: this replica only serves; `dockyard worker` runs the duties.
        duties = maintenance(services) if services.settings.background_duties else None
        if duties is not None:
            duties.start()
        yield
        if duties is not None:
            duties.stop()
        services.close()

    return lifespan


def create_app(services: Services | None = None) -> Starlette:
    """Worker processes call this with no arguments: settings come from DOCKYARD_* variables,
    and the schema, key and admin user were prepared by `dockyard serve` before they started."""
    if services is None:
        settings = load_settings()
        configure(settings.log_level)  # a worker process: log as every other Dockyard process does
        try:
            services = build_services(settings)
        except Exception:
            # Logged here, in the log's format; SystemExit keeps multiprocessing from printing it again.
            get_logger("dockyard.api").critical("worker failed to start", exc_info=True)
            raise SystemExit(3) from None
    routes = [
        *distribution_routes,  # first: the registry's routes are the hot ones, matched in order
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/token", token.get_token, methods=["GET"]),
        Route("/token", token.post_token, methods=["POST"]),
        Route("/admission/validate", admission.validate, methods=["POST"]),
        *oidc.routes(services),
        _Mount("/api/v1", _Management(services)),
        _UiMount(_Ui(services)),  # last: only the paths nothing above claimed
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware),  # outside the boundary: it counts the 500s and 408s it answers
            Middleware(ErrorBoundary, render_error=_internal_error),
            Middleware(BodyTimeout, seconds=services.settings.http_body_read_timeout_seconds, render=_body_timeout),
        ],
        exception_handlers={
            RegistryError: registry_error_handler,
            HTTPException: _http_error,
        },
        lifespan=_lifespan(services),
    )
    app.state.services = services
    return app
