"""Who calls the management API, and the checks every route uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.auth import basic_identity, client_ip
from dockyard.services.audit import Actor, set_actor
from dockyard.services.auth.identity import ANONYMOUS, Identity
from dockyard.services.auth.permissions import Permission
from dockyard.services.auth.tokens import InvalidToken
from dockyard.services.errors import Denied, NotFound, Unauthorized
from dockyard.wiring import Services

SESSION_COOKIE = "dockyard_session"


def get_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(get_services)]


def _bearer(request: Request, svc: Services, token: str) -> Identity:
    try:
        claims = svc.tokens.verify(token)
    except InvalidToken as exc:
        raise Unauthorized(str(exc)) from None
    if not claims.subject:
        return ANONYMOUS
    identity = svc.authenticator.current(claims.subject, claims.credential)
    if identity is None:
        raise Unauthorized("the account this token was issued to may no longer sign in")
    return identity


def _identify(request: Request, svc: Services) -> Identity:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return _bearer(request, svc, header[7:].strip())
    if header:
        return basic_identity(request, svc)
    if SESSION_COOKIE in request.cookies:
        return _bearer(request, svc, request.cookies[SESSION_COOKIE])
    return ANONYMOUS


async def get_caller(request: Request, svc: ServicesDep) -> Identity:
    """Basic credentials (password, access token or robot secret), a registry bearer token, or the
    session cookie set by the OIDC login; anonymous without any.

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


def system_admin(identity: Identity) -> Identity:
    signed_in(identity)
    if not identity.is_admin:
        raise Denied("only a system administrator may do this")
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
