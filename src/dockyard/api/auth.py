"""Who is calling, and may they: Basic or Bearer credentials checked against the access policy."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dockyard.config import Settings
from dockyard.services.audit import DENIED, Actor, set_actor
from dockyard.services.auth.identity import ANONYMOUS, REGISTRY_TOKEN, Identity
from dockyard.services.auth.provisioning import request_access
from dockyard.services.auth.scopes import Scope
from dockyard.services.auth.tokens import InvalidToken, TokenClaims, UnknownKey
from dockyard.services.errors import Denied, Unauthorized
from dockyard.wiring import Services

# The browser login's cookie (set by the OIDC callback, read by the management API).
SESSION_COOKIE = "dockyard_session"


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
    return external_base(request, services.settings) + "/token"


_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def external_base(request: Request, settings: Settings) -> str:
    """The URL clients reach this server at, for links they follow elsewhere (the token realm, OIDC's
    redirect): `public_url`; else, from a trusted proxy (`trusted_proxies`), the first X-Forwarded-Proto
    and X-Forwarded-Host (what the proxy nearest the client saw); else the request's own scheme and Host.
    Anyone else's X-Forwarded-* is ignored: it would let a caller point the realm at another server.
    Location headers need none of this: they are paths, which clients resolve against the URL they used."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme, host = request.url.scheme, request.url.netloc
    peer = request.client.host if request.client else None
    if peer is not None and _in(peer, settings.trusted_proxy_networks):
        proto = _first(request.headers.get("x-forwarded-proto")).lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded_host = _first(request.headers.get("x-forwarded-host"))
        if _HOST.fullmatch(forwarded_host):
            host = forwarded_host
    return f"{scheme}://{host}"


def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()


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


@lru_cache(maxsize=1024)
def _actor(identity: Identity, source_ip: str | None, user_agent: str | None) -> Actor:
    return Actor.of(identity, source_ip, user_agent)  # the same few callers, request after request


def _act(request: Request, identity: Identity) -> Identity:
    """Record who acts for the rest of this request (audit events name them)."""
    set_actor(_actor(identity, client_ip(request), request.headers.get("user-agent")))
    return identity


def basic_identity(request: Request, services: Services, record_success: bool = False) -> Identity:
    """The caller named by Basic credentials (anonymous without an Authorization header).

    Blocking (argon2, LDAP, queries): call it from a worker thread. Raises Challenge (401, with a
    delay once failures pile up) for bad credentials and TooManyRequests while locked out.
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a /v2 request, resolved once: the identity, and the token's claims for Bearer."""

    identity: Identity
    claims: TokenClaims | None = None  # None: Basic credentials or none


class _BadToken(Exception):
    """A bearer token that does not verify, or whose account may no longer act."""


def _claims(token: str, services: Services) -> TokenClaims:
    try:
        return services.tokens.verify(token)
    except InvalidToken as exc:
        raise _BadToken(str(exc)) from None


@lru_cache(maxsize=1024)
def _token_holder(identity: Identity) -> Identity:
    return replace(identity, method=REGISTRY_TOKEN)


def _holder(claims: TokenClaims, identity: Identity | None) -> Caller:
    if not claims.subject:
        return Caller(ANONYMOUS, claims)
    if identity is None:
        raise _BadToken("the account this token was issued to may no longer sign in")
    return Caller(_token_holder(identity), claims)


def _bearer_blocking(token: str, services: Services) -> Caller:
    """The bearer token's caller where blocking is fine: keys and accounts read from the database."""
    claims = _claims(token, services)
    current = None
    if claims.subject:
        current = services.authenticator.current(claims.subject, claims.uid, claims.credential)
    return _holder(claims, current)


async def _bearer(token: str, services: Services) -> Caller:
    """A bearer token is checked on the event loop: its signature (once per token, then remembered)
    and its holder's standing (remembered for `account_check_seconds`) are CPU and memory. Only what
    needs the database (a key another replica made, an account not checked lately) goes to a thread."""
    try:
        claims = services.tokens.verify(token, load_keys=False)
    except UnknownKey:
        return await run_in_threadpool(_bearer_blocking, token, services)
    except InvalidToken as exc:
        raise _BadToken(str(exc)) from None
    if not claims.subject:
        return _holder(claims, None)
    known, current = services.authenticator.current_if_known(claims.subject, claims.uid, claims.credential)
    if not known:
        return await run_in_threadpool(_bearer_blocking, token, services)
    return _holder(claims, current)


async def resolve(request: Request, services: Services) -> Caller:
    """The request's caller, authenticated at most once per request; later checks reuse it. Basic
    credentials (argon2, an LDAP bind, database queries) are checked in a worker thread, never on the
    event loop; bearer tokens mostly on it (`_bearer`)."""
    cached = getattr(request.state, "dockyard_caller", None)
    if isinstance(cached, Caller):
        return cached
    header = request.headers.get("authorization")
    if not header:
        caller = Caller(ANONYMOUS)
    elif header[:7].lower() == "bearer ":
        caller = await _bearer(header[7:].strip(), services)
    else:
        caller = Caller(await run_in_threadpool(basic_identity, request, services))
    request.state.dockyard_caller = caller
    _act(request, caller.identity)
    return caller


async def authorize(request: Request, services: Services, scope: Scope | None) -> Identity:
    """Return the caller's identity if it may act on `scope` (None: any authenticated caller).

    Bearer: the token's `access` claim decides (a pure check), and its holder must still be allowed
    to act (not deleted or disabled, robot not expired, access token not revoked). Basic: the policy
    decides, in a worker thread (it reads memberships); a push first ensures its project exists
    (`provisioning.request_access`), as the token endpoint does.
    Missing or bad credentials get a 401 challenge; a known identity without permission, or a
    valid token without the scope, gets 403 DENIED.
    """
    try:
        caller = await resolve(request, services)
    except _BadToken as exc:
        raise Challenge(str(exc), _challenge(request, services, scope, "invalid_token")) from None
    except Challenge as exc:
        exc.headers = _challenge(request, services, scope)
        raise
    identity, claims = caller.identity, caller.claims
    if claims is not None:
        if scope is None or all(claims.allows(scope.type, scope.name, a) for a in scope.actions):
            return identity
        if not claims.subject:  # an anonymous token: the caller has to log in, as without a token
            raise Challenge("authentication required", _challenge(request, services, scope))
        _record_denial(services, scope)
        # RFC 6750 §3.1: a valid token with too little scope is 403 insufficient_scope. The challenge
        # names the scope needed, so a client can fetch a better token and retry (oras does so on
        # 403; docker, containerd and containers/image ask for push scope up front).
        raise InsufficientScope(
            await run_in_threadpool(services.policy.explain, identity, scope),
            _challenge(request, services, scope, "insufficient_scope"),
            {"scope": str(scope)},
        )
    if scope is None:
        if identity.anonymous:
            raise Challenge("authentication required", _challenge(request, services, None))
        return identity
    if await run_in_threadpool(_granted, services, identity, scope):
        return identity
    if identity.anonymous:
        raise Challenge("authentication required", _challenge(request, services, scope))
    _record_denial(services, scope)
    raise Denied(await run_in_threadpool(services.policy.explain, identity, scope), {"scope": str(scope)})


def _granted(services: Services, identity: Identity, scope: Scope) -> bool:
    # A Basic-authenticated push may begin with any push-scoped request (an upload, a mount, or a
    # manifest whose blobs are all there), so each of them ensures the project first.
    granted = request_access(services.policy, services.projects, identity, [scope])
    return bool(granted) and granted[0].actions >= scope.actions


def _record_denial(services: Services, scope: Scope) -> None:
    if scope.type == "repository":
        services.audit.record_access(
            "access", repository=scope.name, result=DENIED, detail={"actions": sorted(scope.actions)}
        )
