"""Robot accounts. Managing one needs robot:manage in every project it is scoped to."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, signed_in
from dockyard.api.management.models import RobotCreated, RobotIn, RobotOut, RobotPatch, SecretOut, problems
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.auth.robots import Robot
from dockyard.services.errors import InvalidInput
from dockyard.wiring import Services

router = APIRouter(prefix="/robots", tags=["robots"])


def _out(r: Robot) -> RobotOut:
    return RobotOut.model_validate(r, from_attributes=True)


def _may(svc: Services, caller: Identity, projects: list[str], permission: Permission) -> None:
    signed_in(caller)
    if svc.policy.can_system(caller, SystemPermission.MANAGE_ROBOTS):
        return
    for project in projects:
        project_permission(svc, caller, project, permission)


@router.post(
    "",
    response_model=RobotCreated,
    status_code=201,
    summary="Create a robot (secret shown once)",
    responses=problems(409),
)
def create_robot(body: RobotIn, svc: ServicesDep, caller: Caller) -> RobotCreated:
    _may(svc, caller, list(body.permissions), Permission.ROBOT_MANAGE)
    created = svc.robots.create(
        body.name,
        {p: list(a) for p, a in body.permissions.items()},
        body.expires_at,
        body.description,
        creator=caller.subject,
    )
    return RobotCreated(**_out(created.robot).model_dump(), secret=created.secret)


@router.get("", response_model=list[RobotOut], summary="Robots (admins: all; others: a project's)")
def list_robots(svc: ServicesDep, caller: Caller, project: str | None = None) -> list[RobotOut]:
    signed_in(caller)
    if project is None:
        _may(svc, caller, [], Permission.ROBOT_READ)
        if not svc.policy.can_system(caller, SystemPermission.MANAGE_ROBOTS):
            raise InvalidInput("give ?project=<name>: only system administrators list every robot")
    else:
        _may(svc, caller, [project], Permission.ROBOT_READ)
    return [_out(r) for r in svc.robots.list_robots(project)]


@router.get("/{name}", response_model=RobotOut)
def get_robot(name: str, svc: ServicesDep, caller: Caller) -> RobotOut:
    robot = svc.robots.get(name)
    _may(svc, caller, list(robot.permissions), Permission.ROBOT_READ)
    return _out(robot)


@router.patch("/{name}", response_model=RobotOut, summary="Disable or enable a robot")
def update_robot(name: str, body: RobotPatch, svc: ServicesDep, caller: Caller) -> RobotOut:
    robot = svc.robots.get(name)
    _may(svc, caller, list(robot.permissions), Permission.ROBOT_MANAGE)
    if body.disabled is not None:
        robot = svc.robots.set_disabled(name, body.disabled)
    return _out(robot)


@router.post("/{name}/secret", response_model=SecretOut, summary="Replace a robot's secret")
def refresh_secret(name: str, svc: ServicesDep, caller: Caller) -> SecretOut:
    robot = svc.robots.get(name)
    _may(svc, caller, list(robot.permissions), Permission.ROBOT_MANAGE)
    return SecretOut(secret=svc.robots.refresh_secret(name))


@router.delete("/{name}", status_code=204)
def delete_robot(name: str, svc: ServicesDep, caller: Caller) -> Response:
    robot = svc.robots.get(name)
    _may(svc, caller, list(robot.permissions), Permission.ROBOT_MANAGE)
    svc.robots.delete(name)
    return Response(status_code=204)
