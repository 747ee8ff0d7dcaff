"""Who is calling, and may they: Basic or Bearer credentials checked against the access policy."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from dockyard.services.auth.identity import ANONYMOUS, Identity
from dockyard.services.auth.scopes import Scope
from dockyard.services.auth.tokens import InvalidToken
from dockyard.services.errors import Denied, Unauthorized
from dockyard.wiring import Services


class Challenge(Unauthorized):
    """401 with the WWW-Authenticate header that sends clients to the token endpoint."""

    def __init__(self, message: str, headers: dict[str, str], detail: object = None) -> None:
        super().__init__(message, detail)
        self.headers = headers


class InsufficientScope(Denied):
    """403 DENIED with a challenge naming the scope the request needs."""

    def __init__(self, message: str, headers: dict[str, str], detail: object = None) -> None:
        super().__init__(message, detail)
        self.headers = headers


def realm(request: Request, services: Services) -> str:
    base = services.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return base.rstrip("/") + "/token"


def _challenge(request: Request, services: Services, scope: Scope | None, error: str | None = None) -> dict[str, str]:
    parts = [f'realm="{realm(request, services)}"', f'service="{services.settings.token_service}"']
    if scope is not None:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return {"WWW-Authenticate": "Bearer " + ",".join(parts)}


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def authorize(request: Request, services: Services, scope: Scope | None) -> Identity:
    """Return the caller's identity if it may act on `scope` (None: any authenticated caller).

    Bearer: the token's `access` claim decides. Basic: the policy decides directly. Missing or
    bad credentials get a 401 challenge; a known identity without permission, or a valid token
    without the scope, gets 403 DENIED.
    """
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        try:
            claims = services.tokens.verify(header[7:].strip())
        except InvalidToken as exc:
            raise Challenge(str(exc), _challenge(request, services, scope, "invalid_token")) from None
        if scope is not None and not all(claims.allows(scope.type, scope.name, a) for a in scope.actions):
            if not claims.subject:  # an anonymous token: the caller has to log in, as without a token
                raise Challenge("authentication required", _challenge(request, services, scope))
            # RFC 6750 §3.1: a valid token with too little scope is 403 insufficient_scope. The challenge
            # names the scope needed, so a client can fetch a better token and retry (oras does so on
            # 403; docker, containerd and containers/image ask for push scope up front).
            raise InsufficientScope(
                "token does not grant the requested access",
                _challenge(request, services, scope, "insufficient_scope"),
                {"scope": str(scope)},
            )
        return Identity(claims.subject)

    if header:
        creds = basic_credentials(request)
        identity = services.users.authenticate(*creds) if creds else None
        if identity is None:
            raise Challenge("invalid credentials", _challenge(request, services, scope))
    else:
        identity = ANONYMOUS
    if scope is None:
        if identity.anonymous:
            raise Challenge("authentication required", _challenge(request, services, None))
        return identity
    granted = services.policy.grant(identity, [scope])
    if granted and granted[0].actions >= scope.actions:
        return identity
    if identity.anonymous:
        raise Challenge("authentication required", _challenge(request, services, scope))
    raise Denied("requested access to the resource is denied", {"scope": str(scope)})
