"""Quarantine: withhold an image from pulls, release it, list what is withheld, and each project's
automatic quarantine rule (docs/quarantine.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, signed_in
from dockyard.api.management.models import Body, problems
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.errors import CodedError
from dockyard.oci.names import project_of
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.errors import InvalidInput, NotFound
from dockyard.services.trust.quarantine import MAX_REASON, Quarantine
from dockyard.wiring import Services

router = APIRouter(tags=["quarantine"])

# Stated in the document; checked by the route itself (400 with its own message, as for tags).
ImageDigest = Annotated[
    str,
    PathParam(
        description="The image's digest.", json_schema_extra={"pattern": "^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"}
    ),
]

Severity = Literal["critical", "high", "medium", "low", "unknown"]


class QuarantineIn(Body):
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="Why: shown to everyone refused a pull.")


class QuarantineOut(BaseModel):
    project: str
    digest: str
    reason: str
    quarantined_by: str = Field(description='Who quarantined it ("system" for the automatic rule).')
    quarantined_at: float
    automatic: bool
    advisory_id: str | None = Field(None, description="The finding an automatic quarantine was for.")
    repositories: list[str] = Field(
        default_factory=list, description="The project's repositories holding the image (itself or in an index)."
    )


class QuarantinePolicy(BaseModel):
    auto_quarantine_severity: Severity | None = Field(
        None, description="Quarantine an image as soon as a scan finds a finding this severe (null: never)."
    )


class QuarantinePolicyPatch(Body):
    auto_quarantine_severity: Severity | None = Field(None, description="null lifts the rule.")


def quarantine_out(q: Quarantine, repositories: list[str] | None = None) -> QuarantineOut:
    return QuarantineOut(
        project=q.project,
        digest=q.digest,
        reason=q.reason,
        quarantined_by=q.quarantined_by,
        quarantined_at=q.quarantined_at,
        automatic=q.automatic,
        advisory_id=q.advisory_id,
        repositories=repositories or [],
    )


def can_manage(svc: Services, caller: Identity, project: str) -> bool:
    """Whether `caller` may quarantine and release in `project` (what `may_manage` enforces), asked
    without raising: the web UI shows the forms by it."""
    if svc.policy.can_system(caller, SystemPermission.MANAGE_QUARANTINE):
        return True
    return Permission.QUARANTINE_MANAGE in svc.policy.permissions(caller, project)[1]


def may_manage(svc: Services, caller: Identity, repository: str, digest: str, held: bool = True) -> None:
    """Maintainers and up in the project, system administrators and security reviewers; a digest,
    not a tag (a tag moves, a quarantine must not); `held`: the repository must hold the image."""
    signed_in(caller)
    project = project_of(repository)
    if not svc.policy.can_system(caller, SystemPermission.MANAGE_QUARANTINE):
        project_permission(svc, caller, project, Permission.QUARANTINE_MANAGE)
    elif svc.policy.permissions(caller, project)[0] is None:
        raise NotFound(f"project {project!r} does not exist", {"project": project})
    if not is_digest(digest):
        raise InvalidInput("quarantine names an image by digest (sha256:…), not by tag", {"digest": digest})
    try:
        Digest.parse(digest)
    except CodedError as exc:
        raise InvalidInput(exc.message, {"digest": digest}) from None
    if held:
        svc.manifests.get(repository, digest)  # 404 MANIFEST_UNKNOWN unless the repository holds it


def _repositories(svc: Services, items: list[Quarantine]) -> dict[tuple[str, str], list[str]]:
    where = svc.catalog.locations((q.digest for q in items), tags=0)  # the repositories only
    return {
        (q.project, q.digest): sorted(
            {loc["repository"] for loc in where[q.digest] if project_of(loc["repository"]) == q.project}
        )
        for q in items
    }


@router.post(
    "/repositories/{repository:path}/manifests/{digest}/quarantine",
    response_model=QuarantineOut,
    status_code=201,
    summary="Quarantine an image: pulls are refused (in every repository of the project) until released",
    responses=problems(409),
)
def quarantine(
    repository: str, digest: ImageDigest, body: QuarantineIn, svc: ServicesDep, caller: Caller
) -> QuarantineOut:
    may_manage(svc, caller, repository, digest)
    made = svc.quarantines.quarantine(repository, digest, body.reason)
    return quarantine_out(made, _repositories(svc, [made])[(made.project, made.digest)])


@router.delete(
    "/repositories/{repository:path}/manifests/{digest}/quarantine",
    status_code=204,
    summary="Release a quarantined image",
)
def release(repository: str, digest: ImageDigest, svc: ServicesDep, caller: Caller) -> Response:
    # A quarantine outlives the image's deletion (the digest is what was judged): released all the same.
    may_manage(svc, caller, repository, digest, held=False)
    svc.quarantines.release(repository, digest)
    return Response(status_code=204)


@router.get(
    "/quarantine",
    response_model=list[QuarantineOut],
    summary="Quarantined images, newest first (all for administrators and security reviewers; "
    "otherwise those of the projects the caller can see)",
)
def list_quarantined(svc: ServicesDep, caller: Caller, project: str | None = None) -> list[QuarantineOut]:
    signed_in(caller)
    if svc.policy.can_system(caller, SystemPermission.MANAGE_QUARANTINE):
        names: set[str] | None = None
    else:
        names = {p.name for p in svc.policy.visible_projects(caller)}
    if project is not None:
        if names is not None:
            project_permission(svc, caller, project, Permission.PROJECT_READ)
        names = {project}
    items = svc.quarantines.list(names)
    where = _repositories(svc, items)
    return [quarantine_out(q, where[(q.project, q.digest)]) for q in items]


@router.get("/projects/{name}/quarantine-policy", response_model=QuarantinePolicy)
def get_policy(name: str, svc: ServicesDep, caller: Caller) -> QuarantinePolicy:
    project_permission(svc, caller, name, Permission.PROJECT_READ)
    return _policy_out(svc.quarantines.auto_severity(name))


@router.patch(
    "/projects/{name}/quarantine-policy",
    response_model=QuarantinePolicy,
    summary="Set the automatic quarantine rule (project admins)",
)
def set_policy(name: str, body: QuarantinePolicyPatch, svc: ServicesDep, caller: Caller) -> QuarantinePolicy:
    project_permission(svc, caller, name, Permission.PROJECT_UPDATE)
    if "auto_quarantine_severity" not in body.model_fields_set:
        return _policy_out(svc.quarantines.auto_severity(name))
    return _policy_out(svc.quarantines.set_auto_severity(name, body.auto_quarantine_severity))


def _policy_out(severity: str | None) -> QuarantinePolicy:
    return QuarantinePolicy.model_validate({"auto_quarantine_severity": severity.lower() if severity else None})
