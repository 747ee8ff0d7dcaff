"""The FastAPI application mounted at /api/v1; errors are RFC 9457 problem+json."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from dockyard.api.errors import status_for
from dockyard.api.management import audit, lifecycle, projects, robots, scanning, users
from dockyard.api.middleware import ErrorBoundary
from dockyard.services.auth.permissions import MATRIX, Role
from dockyard.services.errors import RegistryError, TooManyRequests, Unauthorized
from dockyard.wiring import Services

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, code: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


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
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, "error", str(exc.detail), "NOT_FOUND" if exc.status_code == 404 else "ERROR")


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
                render_error=lambda: problem(500, "internal server error", "internal server error", "INTERNAL"),
            )
        ],
        exception_handlers={
            RegistryError: _domain_error,
            RequestValidationError: _validation_error,
            HTTPException: _http_error,
        },
    )
    app.state.services = services
    for module in (projects, users, robots, audit, lifecycle, scanning):
        app.include_router(module.router)

    @app.get("/permissions", tags=["access"], summary="The permission matrix: least role per permission")
    def permission_matrix() -> dict[str, str]:
        return {perm.value: role.label for perm, role in MATRIX.items()} | {"_roles": ",".join(r.label for r in Role)}

    return app
