"""The token endpoint of the Docker token authentication spec (GET) and its OAuth2 form (POST)."""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.api.auth import basic_credentials, client_ip
from dockyard.api.distribution.common import services
from dockyard.api.errors import error_body
from dockyard.services.audit import Actor, acting_as
from dockyard.services.auth.identity import ANONYMOUS, Identity
from dockyard.services.auth.provisioning import request_access
from dockyard.services.auth.scopes import parse_scopes


def _unauthorized(message: str) -> Response:
    return JSONResponse(
        error_body("UNAUTHORIZED", message), status_code=401, headers={"WWW-Authenticate": 'Basic realm="dockyard"'}
    )


def _issue(request: Request, identity: Identity, scope_values: list[str]) -> dict[str, object]:
    svc = services(request)
    # A request for push ensures the project exists (auto-created ones are recorded as created by
    # this caller), then the policy decides.
    with acting_as(Actor.of(identity, client_ip(request), request.headers.get("user-agent"))):
        granted = request_access(svc.policy, svc.projects, identity, parse_scopes(scope_values))
    issued = svc.tokens.issue(identity, granted)
    return {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    }


async def _respond(request: Request, identity: Identity, scope_values: list[str]) -> Response:
    body = await run_in_threadpool(_issue, request, identity, scope_values)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _login(request: Request, username: str, password: str) -> Identity | Response:
    outcome = await run_in_threadpool(
        services(request).authenticator.login,
        username,
        password,
        client_ip(request),
        request.headers.get("user-agent"),
    )
    if outcome.identity is None:
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        return _unauthorized("invalid username or password")
    return outcome.identity


async def get_token(request: Request) -> Response:
    identity: Identity = ANONYMOUS
    if request.headers.get("authorization"):
        creds = basic_credentials(request)
        if creds is None:
            return _unauthorized("malformed Basic credentials")
        found = await _login(request, *creds)
        if isinstance(found, Response):
            return found
        identity = found
    return await _respond(request, identity, request.query_params.getlist("scope"))


async def post_token(request: Request) -> Response:
    """OAuth2 password grant, as containerd and docker use it when asked to."""
    form = await request.form()
    if form.get("grant_type") != "password":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    identity = await _login(request, str(form.get("username", "")), str(form.get("password", "")))
    if isinstance(identity, Response):
        return identity
    return await _respond(request, identity, [str(v) for v in form.getlist("scope")])
