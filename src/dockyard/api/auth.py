"""Who is calling, and may they: Basic or Bearer credentials checked against the access policy."""

from __future__ import annotations

import base64
import binascii
import ipaddress

from starlette.requests import Request

from dockyard.services.audit import DENIED, Actor, set_actor
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
        self.delay = 0.0  # brute-force slow-down: seconds to wait before answering


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


def client_ip(request: Request) -> str | None:
    """The caller's address for the audit log and brute-force limits. Behind a trusted reverse proxy
    (`trusted_proxies`), the nearest address in X-Forwarded-For that is not itself a trusted proxy."""
    peer = request.client.host if request.client else None
    trusted = request.app.state.services.settings.trusted_proxy_networks
    if not trusted or peer is None or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _act(request: Request, identity: Identity) -> Identity:
    """Record who acts for the rest of this request (audit events name them)."""
    set_actor(Actor.of(identity, client_ip(request), request.headers.get("user-agent")))
    return identity


def basic_identity(request: Request, services: Services, record_success: bool = False) -> Identity:
    """The caller named by Basic credentials (anonymous without an Authorization header).

    Raises Challenge (401, with a delay once failures pile up) for bad credentials and
    TooManyRequests while the address or account is locked out.
    """
    header = request.headers.get("authorization", "")
    if not header:
        return ANONYMOUS
    creds = basic_credentials(request)
    if creds is None:
        raise Challenge("malformed Basic credentials", {"WWW-Authenticate": 'Basic realm="dockyard"'})
    outcome = services.authenticator.login(
        creds[0], creds[1], client_ip(request), request.headers.get("user-agent"), record_success
    )
    if outcome.identity is None:
        exc = Challenge("invalid username or password", {"WWW-Authenticate": 'Basic realm="dockyard"'})
        exc.delay = outcome.delay
        raise exc
    return outcome.identity


def authorize(request: Request, services: Services, scope: Scope | None) -> Identity:
    """Return the caller's identity if it may act on `scope` (None: any authenticated caller).

    Bearer: the token's `access` claim decides, and its holder must still be allowed to act
    (not deleted or disabled, robot not expired, access token not revoked). Basic: the policy
    decides directly. Missing or bad credentials get a 401 challenge; a known identity without
    permission, or a valid token without the scope, gets 403 DENIED.
    """
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        try:
            claims = services.tokens.verify(header[7:].strip())
        except InvalidToken as exc:
            raise Challenge(str(exc), _challenge(request, services, scope, "invalid_token")) from None
        identity = ANONYMOUS
        if claims.subject:
            current = services.authenticator.current(claims.subject, claims.credential)
            if current is None:
                raise Challenge(
                    "the account this token was issued to may no longer sign in",
                    _challenge(request, services, scope, "invalid_token"),
                )
            identity = current
        _act(request, identity)
        if scope is not None and not all(claims.allows(scope.type, scope.name, a) for a in scope.actions):
            if not claims.subject:  # an anonymous token: the caller has to log in, as without a token
                raise Challenge("authentication required", _challenge(request, services, scope))
            _record_denial(services, scope)
            # RFC 6750 §3.1: a valid token with too little scope is 403 insufficient_scope. The challenge
            # names the scope needed, so a client can fetch a better token and retry (oras does so on
            # 403; docker, containerd and containers/image ask for push scope up front).
            raise InsufficientScope(
                services.policy.explain(identity, scope),
                _challenge(request, services, scope, "insufficient_scope"),
                {"scope": str(scope)},
            )
        return identity

    try:
        identity = _act(request, basic_identity(request, services))
    except Challenge as exc:
        exc.headers = _challenge(request, services, scope)
        raise
    if scope is None:
        if identity.anonymous:
            raise Challenge("authentication required", _challenge(request, services, None))
        return identity
    granted = services.policy.grant(identity, [scope])
    if granted and granted[0].actions >= scope.actions:
        return identity
    if identity.anonymous:
        raise Challenge("authentication required", _challenge(request, services, scope))
    _record_denial(services, scope)
    raise Denied(services.policy.explain(identity, scope), {"scope": str(scope)})


def _record_denial(services: Services, scope: Scope) -> None:
    if scope.type == "repository":
        services.audit.record_access(
            "access", repository=scope.name, result=DENIED, detail={"actions": sorted(scope.actions)}
        )
