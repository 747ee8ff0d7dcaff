"""The token endpoint of the Docker token authentication spec (GET) and its OAuth2 form (POST)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.api.auth import basic_credentials
from dockyard.api.distribution.common import services
from dockyard.api.errors import error_body
from dockyard.services.auth.identity import ANONYMOUS, Identity
from dockyard.services.auth.scopes import parse_scopes


def _unauthorized(message: str) -> Response:
    return JSONResponse(
        error_body("UNAUTHORIZED", message), status_code=401, headers={"WWW-Authenticate": 'Basic realm="dockyard"'}
    )


def _token_response(request: Request, identity: Identity, scope_values: list[str]) -> Response:
    svc = services(request)
    granted = svc.policy.grant(identity, parse_scopes(scope_values))
    issued = svc.tokens.issue(identity, granted)
    return JSONResponse(
        {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued.issued_at,
        },
        headers={"Cache-Control": "no-store"},
    )


async def get_token(request: Request) -> Response:
    identity = ANONYMOUS
    if request.headers.get("authorization"):
        creds = basic_credentials(request)
        if creds is None:
            return _unauthorized("malformed Basic credentials")
        found = await run_in_threadpool(services(request).users.authenticate, *creds)
        if found is None:
            return _unauthorized("invalid username or password")
        identity = found
    return _token_response(request, identity, request.query_params.getlist("scope"))


async def post_token(request: Request) -> Response:
    """OAuth2 password grant, as containerd and docker use it when asked to."""
    form = await request.form()
    if form.get("grant_type") != "password":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    found = await run_in_threadpool(services(request).users.authenticate, username, password)
    if found is None:
        return _unauthorized("invalid username or password")
    return _token_response(request, found, [str(v) for v in form.getlist("scope")])
