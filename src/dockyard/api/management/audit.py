"""Audit events: filter, page and export. System admins see all; project admins their project's."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, signed_in
from dockyard.api.management.models import AuditEventOut, AuditPage
from dockyard.oci.names import project_of
from dockyard.services.audit import AuditFilter
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.errors import InvalidInput
from dockyard.wiring import Services

router = APIRouter(prefix="/audit", tags=["audit"])
# `next_before` as AuditLog.query writes it: "<timestamp>_<event id>".
CURSOR_PATTERN = r"^[0-9]{1,20}(?:\.[0-9]{1,20})?(?:e[+-]?[0-9]{1,3})?_[0-9]{1,18}$"
EXPORT_TYPES = {"application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}


def _filter(
    svc: Services,
    caller: Identity,
    project: str | None,
    repository: str | None,
    actor: str | None,
    action: str | None,
    digest: str | None,
    since: float | None,
    until: float | None,
) -> AuditFilter:
    signed_in(caller)
    if repository and not project:
        project = project_of(repository)
    if not svc.policy.can_system(caller, SystemPermission.READ_ALL_AUDIT):
        if not project:
            raise InvalidInput("give ?project=<name>: only system administrators read the whole audit log")
        project_permission(svc, caller, project, Permission.AUDIT_READ)
    return AuditFilter(project, repository, actor, action, digest, since, until)


@router.get("", response_model=AuditPage, summary="Audit events, newest first")
def list_events(
    svc: ServicesDep,
    caller: Caller,
    project: str | None = None,
    repository: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    digest: str | None = None,
    since: Annotated[float | None, Query(description="UNIX time, inclusive")] = None,
    until: Annotated[float | None, Query(description="UNIX time, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        str | None, Query(description="`next_before` of the previous page", pattern=CURSOR_PATTERN, max_length=64)
    ] = None,
) -> AuditPage:
    f = _filter(svc, caller, project, repository, actor, action, digest, since, until)
    rows, cursor = svc.audit.query(f, limit, before)
    return AuditPage(events=[AuditEventOut(**row) for row in rows], next_before=cursor)


@router.get(
    "/export",
    summary="All matching events as JSON lines or CSV, oldest first",
    response_class=StreamingResponse,
    responses={200: {"description": "The events", "content": EXPORT_TYPES}},
)
def export_events(
    svc: ServicesDep,
    caller: Caller,
    format: Literal["jsonl", "csv"] = "jsonl",
    project: str | None = None,
    repository: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    digest: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> StreamingResponse:
    f = _filter(svc, caller, project, repository, actor, action, digest, since, until)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        svc.audit.export(f, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )
