"""Who calls the management API, and the checks every route uses."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.auth import SESSION_COOKIE, basic_identity, client_ip
from dockyard.services.audit import Actor, set_actor
from dockyard.services.auth.identity import ANONYMOUS, SESSION, Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.auth.tokens import InvalidToken
from dockyard.services.errors import Denied, NotFound, Unauthorized
from dockyard.wiring import Services


def get_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(get_services)]


def _session(svc: Services, token: str) -> Identity:
    try:
        subject, uid = svc.tokens.verify_session(token)
    except InvalidToken as exc:
        raise Unauthorized(f"session: {exc}") from None
    identity = svc.authenticator.current(subject, uid)
    if identity is None:
        raise Unauthorized("the account this session belongs to may no longer sign in")
    return replace(identity, method=SESSION)


def _identify(request: Request, svc: Services) -> Identity:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        # A registry token is for /v2 and the scopes it names, whatever they are: it is never a
        # login here (a pull token must not create administrators).
        raise Unauthorized(
            "registry tokens are not accepted here: use Basic credentials (password, access token or "
            "robot secret) or the session"
        )
    if header:
        return basic_identity(request, svc)
    if SESSION_COOKIE in request.cookies:
        return _session(svc, request.cookies[SESSION_COOKIE])
    return ANONYMOUS


async def get_caller(request: Request, svc: ServicesDep) -> Identity:
    """Basic credentials (password, access token or robot secret) or the session cookie set by the
    OIDC login; anonymous without any. Registry bearer tokens are refused.

    Async on purpose: the actor is set in the request's own context, which the (threaded) endpoint
    then inherits; a sync dependency would set it in a throw-away copy and audit events would name
    no one.
    """
    identity = await run_in_threadpool(_identify, request, svc)
    set_actor(Actor.of(identity, client_ip(request), request.headers.get("user-agent")))
    return identity


Caller = Annotated[Identity, Depends(get_caller)]


def signed_in(identity: Identity) -> Identity:
    if identity.anonymous:
        raise Unauthorized("sign in to use this operation")
    return identity


def minting(identity: Identity) -> Identity:
    """A login that may create long-lived credentials (access tokens, CLI secrets): a password or the
    session. A leaked access token, robot or CLI secret must not be able to outlive its revocation."""
    signed_in(identity)
    if not identity.may_mint_credentials:
        raise Denied("sign in with your password (or the browser session) to create credentials")
    return identity


def require_system(svc: Services, identity: Identity, permission: SystemPermission) -> Identity:
    """Raise unless the caller holds the registry-wide `permission` (permissions.SYSTEM_MATRIX, as the
    policy decides): 401 for anonymous callers, 403 for others."""
    signed_in(identity)
    if not svc.policy.can_system(identity, permission):
        raise Denied("only a system administrator may do this", {"permission": permission.value})
    return identity


def project_permission(svc: Services, identity: Identity, project: str, permission: Permission) -> None:
    """Raise unless the caller holds `permission` in `project`. A project the caller may not even
    see is reported as missing, so private project names do not leak."""
    found, perms = svc.policy.permissions(identity, project)
    if found is None:
        raise NotFound(f"project {project!r} does not exist", {"project": project})
    if permission in perms:
        return
    if Permission.PROJECT_READ not in perms:
        if identity.anonymous:
            raise Unauthorized("sign in to use this operation")
        raise NotFound(f"project {project!r} does not exist", {"project": project})
    if identity.anonymous:
        raise Unauthorized("sign in to use this operation")
    raise Denied(f"{permission.value} in project {project!r} is denied", {"permission": permission.value})
