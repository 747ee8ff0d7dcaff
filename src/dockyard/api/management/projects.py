"""Projects, their repositories and members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, signed_in
from dockyard.api.management.models import (
    MemberIn,
    MemberOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    RepositoryOut,
    problems,
)
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, Role, SystemPermission
from dockyard.services.errors import Denied
from dockyard.services.projects import Project
from dockyard.wiring import Services

router = APIRouter(prefix="/projects", tags=["projects"])


def project_out(svc: Services, identity: Identity, project: Project) -> ProjectOut:
    role = None
    if svc.policy.can_system(identity, SystemPermission.ALL_PROJECTS):
        role = "admin"
    elif not identity.anonymous and not identity.is_robot:
        with svc.db.read() as conn:
            found = svc.projects.role_in(conn, project.id, identity.subject, identity.groups)
        role = found.label if found else None
    return ProjectOut(
        name=project.name,
        public=project.public,
        created_by=project.created_by,
        created_at=project.created_at,
        updated_at=project.updated_at,
        role=role,
        quota_bytes=project.quota_bytes,
        used_bytes=project.used_bytes,
    )


@router.get("", response_model=list[ProjectOut], summary="Projects the caller can see")
def list_projects(svc: ServicesDep, caller: Caller) -> list[ProjectOut]:
    return [project_out(svc, caller, p) for p in svc.policy.visible_projects(caller)]


@router.post("", response_model=ProjectOut, status_code=201, summary="Create a project", responses=problems(409))
def create_project(body: ProjectIn, svc: ServicesDep, caller: Caller) -> ProjectOut:
    signed_in(caller)
    if not svc.policy.can_create_projects(caller):
        raise Denied("you may not create projects")
    project = svc.projects.create(body.name, body.public, creator=caller.subject)
    return project_out(svc, caller, project)


@router.get("/{name}", response_model=ProjectOut)
def get_project(name: str, svc: ServicesDep, caller: Caller) -> ProjectOut:
    project_permission(svc, caller, name, Permission.PROJECT_READ)
    return project_out(svc, caller, svc.projects.get(name))


@router.patch("/{name}", response_model=ProjectOut, summary="Change project settings")
def update_project(name: str, body: ProjectPatch, svc: ServicesDep, caller: Caller) -> ProjectOut:
    project_permission(svc, caller, name, Permission.PROJECT_UPDATE)
    return project_out(svc, caller, svc.projects.update(name, public=body.public))


@router.delete("/{name}", status_code=204, summary="Delete an empty project", responses=problems(409))
def delete_project(name: str, svc: ServicesDep, caller: Caller) -> Response:
    project_permission(svc, caller, name, Permission.PROJECT_DELETE)
    svc.projects.delete(name)
    return Response(status_code=204)


@router.get("/{name}/repositories", response_model=list[RepositoryOut])
def list_repositories(name: str, svc: ServicesDep, caller: Caller) -> list[RepositoryOut]:
    project_permission(svc, caller, name, Permission.PULL)
    quarantined = svc.quarantines.counts_by_repository(name)
    return [
        RepositoryOut(name=n, created_at=c, tag_count=t, used_bytes=u, quarantined_images=quarantined.get(n, 0))
        for n, c, t, u in svc.catalog.repositories_in(name)
    ]


@router.get("/{name}/members", response_model=list[MemberOut])
def list_members(name: str, svc: ServicesDep, caller: Caller) -> list[MemberOut]:
    project_permission(svc, caller, name, Permission.MEMBER_READ)
    return [
        MemberOut(kind=m.principal_kind, name=m.principal, role=m.role.label)  # type: ignore[arg-type]
        for m in svc.projects.members(name)
    ]


# Stated in the document, checked by the service (400 with its own message).
MemberKind = Annotated[str, PathParam(json_schema_extra={"enum": ["user", "group"]})]


@router.put("/{name}/members/{kind}/{principal}", response_model=MemberOut, summary="Grant or change a role")
def set_member(
    name: str, kind: MemberKind, principal: str, body: MemberIn, svc: ServicesDep, caller: Caller
) -> MemberOut:
    project_permission(svc, caller, name, Permission.MEMBER_MANAGE)
    svc.projects.set_member(name, kind, principal, Role.parse(body.role))
    return MemberOut(kind=kind, name=principal, role=body.role)  # type: ignore[arg-type]


@router.delete("/{name}/members/{kind}/{principal}", status_code=204, summary="Revoke a role")
def remove_member(name: str, kind: MemberKind, principal: str, svc: ServicesDep, caller: Caller) -> Response:
    project_permission(svc, caller, name, Permission.MEMBER_MANAGE)
    svc.projects.remove_member(name, kind, principal)
    return Response(status_code=204)
