"""Users (system administrators), the caller's own account, and personal access tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from dockyard.api.auth import client_ip
from dockyard.api.management.deps import Caller, ServicesDep, minting, require_system, signed_in
from dockyard.api.management.models import (
    MeOut,
    PasswordIn,
    SecretOut,
    TokenCreated,
    TokenIn,
    TokenOut,
    UnlockOut,
    UserIn,
    UserOut,
    UserPatch,
    problems,
)
from dockyard.services.auth.access_tokens import AccessToken
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import SystemPermission
from dockyard.services.auth.users import User
from dockyard.services.errors import Conflict, Denied, InvalidInput

router = APIRouter(tags=["users"])


def _user(u: User) -> UserOut:
    return UserOut.model_validate(u, from_attributes=True)


def _token(t: AccessToken) -> TokenOut:
    return TokenOut.model_validate(t, from_attributes=True)


def _human(identity: Identity) -> Identity:
    signed_in(identity)
    if identity.is_robot:
        raise Denied("robot accounts have no user profile")
    return identity


@router.get("/users", response_model=list[UserOut])
def list_users(svc: ServicesDep, caller: Caller) -> list[UserOut]:
    require_system(svc, caller, SystemPermission.MANAGE_USERS)
    return [_user(u) for u in svc.users.list_users()]


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a local user", responses=problems(409))
def create_user(body: UserIn, svc: ServicesDep, caller: Caller) -> UserOut:
    require_system(svc, caller, SystemPermission.MANAGE_USERS)
    return _user(svc.users.create(body.username, body.password, body.is_admin, body.email, body.can_create_projects))


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, svc: ServicesDep, caller: Caller) -> UserOut:
    if caller.subject != username:
        require_system(svc, caller, SystemPermission.MANAGE_USERS)
    return _user(svc.users.get(username))


@router.patch("/users/{username}", response_model=UserOut, summary="Disable, promote or change a user")
def update_user(username: str, body: UserPatch, svc: ServicesDep, caller: Caller) -> UserOut:
    require_system(svc, caller, SystemPermission.MANAGE_USERS)
    if username == caller.subject and (body.disabled or body.is_admin is False):
        raise InvalidInput("you may not disable or demote yourself")
    return _user(
        svc.users.update(
            username,
            is_admin=body.is_admin,
            disabled=body.disabled,
            can_create_projects=body.can_create_projects,
            email=body.email,
        )
    )


@router.delete("/users/{username}", status_code=204)
def delete_user(username: str, svc: ServicesDep, caller: Caller) -> Response:
    require_system(svc, caller, SystemPermission.MANAGE_USERS)
    if username == caller.subject:
        raise InvalidInput("you may not delete yourself")
    svc.users.delete(username)
    return Response(status_code=204)


@router.put("/users/{username}/password", status_code=204, summary="Set a local user's password")
def set_password(username: str, body: PasswordIn, svc: ServicesDep, caller: Caller, request: Request) -> Response:
    """A system administrator may set another account's password; anyone changing their own
    (administrators included) must give the current one, so a leaked access token or session cannot
    take the account over."""
    if caller.subject != username or caller.is_robot:
        require_system(svc, caller, SystemPermission.MANAGE_USERS)
    else:
        signed_in(caller)
        if not body.current_password:
            raise Denied("give your current password (current_password) to change it")
        if not svc.authenticator.check_password(username, body.current_password, client_ip(request)):
            raise Denied("the current password is wrong")
    svc.users.set_password(username, body.password)
    return Response(status_code=204)


@router.post(
    "/users/{username}/unlock",
    response_model=UnlockOut,
    summary="Clear a user's or robot's failed-login locks",
    description="Forgets the account's failed-login counters and locks from every address "
    "(a robot by its login name, robot$…). System administrators only.",
)
def unlock_user(username: str, svc: ServicesDep, caller: Caller) -> UnlockOut:
    require_system(svc, caller, SystemPermission.MANAGE_USERS)
    return UnlockOut(**svc.authenticator.unlock(username))


@router.get("/me", response_model=MeOut, summary="Who the caller is")
def me(caller: Caller) -> MeOut:
    signed_in(caller)
    return MeOut(
        subject=caller.subject,
        kind=caller.kind,
        provider=caller.provider,
        is_admin=caller.is_admin,
        groups=sorted(caller.groups),
        can_create_projects=caller.can_create_projects,
    )


@router.post(
    "/me/cli-secret",
    response_model=SecretOut,
    summary="New registry-login secret (OIDC users)",
    responses=problems(409),
)
def new_cli_secret(svc: ServicesDep, caller: Caller) -> SecretOut:
    _human(caller)
    minting(caller)
    if caller.provider != "oidc":
        # The request is well formed; the account is not of the kind that has one.
        raise Conflict("only OIDC users have a CLI secret; others log in with their password or a token")
    return SecretOut(secret=svc.users.new_cli_secret(caller.subject))


@router.get("/me/tokens", response_model=list[TokenOut], tags=["tokens"])
def list_tokens(svc: ServicesDep, caller: Caller) -> list[TokenOut]:
    _human(caller)
    return [_token(t) for t in svc.access_tokens.list(caller.subject)]


@router.post("/me/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"], responses=problems(409))
def create_token(body: TokenIn, svc: ServicesDep, caller: Caller) -> TokenCreated:
    _human(caller)
    minting(caller)
    created = svc.access_tokens.create(caller.subject, body.name, body.expires_at)
    return TokenCreated(**_token(created.token).model_dump(), secret=created.secret)


@router.delete("/me/tokens/{name}", status_code=204, tags=["tokens"], summary="Revoke a token")
def revoke_token(name: str, svc: ServicesDep, caller: Caller) -> Response:
    _human(caller)
    svc.access_tokens.revoke(caller.subject, name)
    return Response(status_code=204)
