"""GET /exposure: the images an advisory or a package affects, their tags now and then, and their pulls."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from dockyard.api.management.audit import CURSOR_PATTERN, EXPORT_TYPES
from dockyard.api.management.deps import Caller, ServicesDep, signed_in
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.exposure import ExposureQuery
from dockyard.wiring import Services

router = APIRouter(tags=["exposure"])
TYPES = {"application/json": {"schema": {"type": "object"}}, **EXPORT_TYPES}


def readable_projects(svc: Services, caller: Identity) -> frozenset[str] | None:
    """The projects whose images the caller may pull (None: every project, for system administrators)."""
    if svc.policy.can_system(caller, SystemPermission.ALL_PROJECTS):
        return None
    return frozenset(
        p.name for p in svc.policy.visible_projects(caller) if svc.policy.can(caller, p.name, Permission.PULL)
    )


@router.get(
    "/exposure",
    summary="Who pulled what an advisory (or a package at a version) affects, when and from where",
    description="Only projects the caller may pull from are looked at; the rest is left out. "
    "`format=csv` streams every pull, `format=jsonl` the digests, tags and history intervals and then every pull.",
    response_model=None,
    responses={200: {"description": "The report", "content": TYPES}},
)
def exposure(
    svc: ServicesDep,
    caller: Caller,
    advisory: Annotated[str | None, Query(min_length=1, max_length=512, description="An advisory id or alias")] = None,
    package: Annotated[str | None, Query(min_length=1, max_length=512, description="Instead of advisory")] = None,
    version: Annotated[str | None, Query(min_length=1, max_length=512, description="With package")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e15, description="UNIX time, inclusive")] = None,
    until: Annotated[float | None, Query(ge=0, le=1e15, description="UNIX time, exclusive")] = None,
    format: Literal["json", "csv", "jsonl"] = "json",
    limit: Annotated[int, Query(ge=1, le=1000, description="Pull events per page (JSON)")] = 100,
    before: Annotated[
        str | None, Query(description="`pulls.next_before` of the previous page", pattern=CURSOR_PATTERN, max_length=64)
    ] = None,
) -> dict[str, Any] | StreamingResponse:
    signed_in(caller)
    q = ExposureQuery(advisory, package, version, since, until)
    projects = readable_projects(svc, caller)
    if format == "json":
        return svc.exposure.report(q, projects, limit, before)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        svc.exposure.export(q, projects, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="exposure.{format}"'},
    )
