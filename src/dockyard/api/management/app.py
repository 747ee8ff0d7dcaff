"""The FastAPI application mounted at /api/v1; errors are RFC 9457 problem+json."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from dockyard.api.errors import allowed_methods, status_for
from dockyard.api.management import (
    audit,
    exposure,
    history,
    lifecycle,
    projects,
    quarantine,
    robots,
    scanning,
    system,
    trust,
    users,
)
from dockyard.api.management.models import problems
from dockyard.api.middleware import ErrorBoundary
from dockyard.api.problem import problem
from dockyard.services.auth.permissions import MATRIX, Role
from dockyard.services.errors import RegistryError, TooManyRequests, Unauthorized
from dockyard.wiring import Services

# What any operation may answer: bad input (400 from a service rule, 422 from validation), no or
# wrong credentials (401), not allowed (403), something named that does not exist (404), throttled
# login attempts (429). Operations that create or delete add 409.
COMMON_ERRORS = problems(400, 401, 403, 404, 422, 429)
CONFLICT = problems(409)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="dockyard"'
        delay = getattr(exc, "delay", 0.0)
        if delay:
            await asyncio.sleep(delay)
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(status, exc.code.replace("_", " ").lower(), exc.message, exc.code, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}")
    return problem(422, "invalid request", "; ".join(parts), "INVALID")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing and body-parsing errors: 404 (no such route), 405 (with every method the path
    allows: Starlette's own header names only the first route that matched), 400 (unparseable body)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app.state.endpoints, request.scope))
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "INVALID"}
    title = HTTPStatus(status).phrase.lower()
    return problem(status, title, str(exc.detail), codes.get(status, "ERROR"), headers)


def create_management_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Dockyard management API",
        version="1",
        description="Projects, members, users, robot accounts, access tokens and the audit log. "
        "Authenticate with Basic credentials (password, personal access token or robot secret) "
        "or the session cookie of the browser login; registry tokens from /token are refused.",
        # Its own boundary, so an unexpected error is logged once and answered as problem+json.
        middleware=[
            Middleware(
                ErrorBoundary,
                render_error=lambda: problem(500, "internal server error", "internal server error", "UNKNOWN"),
            )
        ],
        exception_handlers={
            RegistryError: _domain_error,
            RequestValidationError: _validation_error,
            HTTPException: _http_error,
        },
    )
    app.state.services = services
    modules = (projects, users, robots, audit, lifecycle, scanning, history, exposure, quarantine, trust, system)
    for module in modules:
        app.include_router(module.router, responses=COMMON_ERRORS)
    # The operations themselves, for the Allow header of a 405 (FastAPI nests included routers).
    app.state.endpoints = [route for module in modules for route in module.router.routes]

    @app.get(
        "/permissions",
        tags=["access"],
        summary="The permission matrix: least role per permission",
        responses=COMMON_ERRORS,
    )
    def permission_matrix() -> dict[str, str]:
        return {perm.value: role.label for perm, role in MATRIX.items()} | {"_roles": ",".join(r.label for r in Role)}

    app.state.endpoints += [route for route in app.router.routes if getattr(route, "path", "") == "/permissions"]

    return app
