"""Scan reports, SBOMs, on-demand scans, registry-wide questions, scan policies and the vulnerability
database's status."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, require_system, signed_in
from dockyard.api.management.models import Body, Keep, Text
from dockyard.api.management.quarantine import QuarantineOut, quarantine_out
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import project_of
from dockyard.scan.layers import platform_name
from dockyard.scan.model import DatabaseInfo
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.errors import NotFound
from dockyard.services.gates.licences import denied_licences
from dockyard.services.lifecycle import maintenance
from dockyard.wiring import Services

router = APIRouter(tags=["scanning"])

Severity = Literal["critical", "high", "medium", "low", "unknown"]


class FindingOut(BaseModel):
    advisory_id: str
    aliases: list[str]
    severity: str
    score: float | None
    package: str
    ecosystem: str
    installed_version: str
    fixed_version: str | None
    purl: str
    path: str
    link: str
    summary: str


class VulnDatabaseOut(BaseModel):
    generation: int
    advisories: int
    updated_at: str | None = Field(description="When its sources were last read successfully (the oldest of them).")
    age_seconds: float | None
    state: Literal["empty", "stale", "current"] = Field(
        description="empty: no advisories, nothing was checked (counts as not scanned for block_unscanned); "
        "stale: older than vulndb_stale_after_seconds."
    )


class ImageReport(BaseModel):
    digest: str
    platform: str | None = None
    quarantined: bool = Field(default=False, description="Quarantined in this project (pulls refused).")
    status: str = Field(description="queued, scanning, done, failed, skipped (scan on push off), unsupported")
    scanned_at: float | None = None
    distro: str | None = None
    summary: dict[str, int] | None = Field(default=None, description="Findings by severity.")
    licences: list[str] = Field(default_factory=list, description="Distinct licence expressions of the packages.")
    denied_licences: list[str] = Field(default_factory=list, description="SPDX ids on the project's deny-list.")
    packages: int | None = None
    error: str | None = None
    scanner: str | None = Field(default=None, description='"dockyard" or "external:<adapter URL>"')
    vulnerability_database: VulnDatabaseOut | None = Field(
        default=None,
        description="The database the findings were evaluated against (null for an external scanner's results).",
    )
    findings: list[FindingOut] | None = None


class ScanReport(BaseModel):
    digest: str
    media_type: str
    images: list[ImageReport] = Field(description="One image; or, for an index, one per platform.")
    quarantine: QuarantineOut | None = Field(
        default=None,
        description="Why pulls of it are refused, if it (or, for an index, an image of it) is quarantined.",
    )


class ScanPolicy(BaseModel):
    scan_on_push: bool | None = Field(default=None, description="null: the system default.")
    block_severity: Severity | None = Field(
        default=None, description="Refuse pulls of images with findings this severe."
    )
    block_unscanned: bool = False
    vulnerability_allowlist: list[str] = Field(default_factory=list, description="Advisory or CVE ids to ignore.")
    licence_denylist: list[str] = Field(default_factory=list, description="SPDX licence ids to report (and block).")
    block_denied_licences: bool = False


class ScanPolicyPatch(Body):
    """Omitted fields keep their value; null means "the system default" only where the policy has
    one (scan_on_push) or "no limit" (block_severity), and is refused (422) elsewhere."""

    scan_on_push: bool | None = Field(default=None, description="null: the system default.")
    block_severity: Severity | None = Field(default=None, description="null: block on no severity.")
    block_unscanned: bool = Keep()
    vulnerability_allowlist: list[Text] = Keep()
    licence_denylist: list[Text] = Keep()
    block_denied_licences: bool = Keep()


def _manifest(svc: Services, caller: Identity, repository: str, reference: str, permission: Permission) -> Any:
    project_permission(svc, caller, project_of(repository), permission)
    return svc.manifests.get(repository, reference)


def _images(media_type: str, content: bytes, digest: str) -> list[tuple[str, str | None]]:
    try:
        parsed = parse_manifest(content, media_type, max_bytes=None)  # admitted at push time
    except InvalidManifest:
        return [(digest, None)]
    if not parsed.manifests:
        return [(digest, None)]
    out = []
    for d in parsed.manifests:
        out.append((d.digest, platform_name(d.platform) if d.platform else None))
    return out


def _image_report(
    svc: Services, digest: str, platform: str | None, with_findings: bool, denylist: frozenset[str]
) -> ImageReport:
    status = svc.scans.status(digest)
    if status is None:
        return ImageReport(digest=digest, platform=platform, status="not scanned")
    report = ImageReport(
        digest=digest,
        platform=platform,
        status=status["status"],
        scanned_at=status["scanned_at"],
        distro=status["distro"],
        summary=status["summary"],
        licences=status["licences"],
        denied_licences=denied_licences(status["licences"], denylist),
        error=status["error"],
        scanner=status["scanner"],
        vulnerability_database=_database_out(status["vulnerability_database"]),
    )
    result = svc.scans.result(digest) if status["status"] == "done" else None
    if result is not None:
        report.packages = len(result.packages)
        if with_findings:
            report.findings = [
                FindingOut(
                    advisory_id=f.advisory_id,
                    aliases=list(f.aliases),
                    severity=f.severity,
                    score=f.score,
                    package=f.package.name,
                    ecosystem=f.package.ecosystem,
                    installed_version=f.installed_version,
                    fixed_version=f.fixed_version,
                    purl=f.package.purl,
                    path=f.package.path,
                    link=f.link,
                    summary=f.summary,
                )
                for f in result.findings
            ]
    return report


def _database_out(info: DatabaseInfo | None) -> VulnDatabaseOut | None:
    return None if info is None else VulnDatabaseOut.model_validate(info.as_dict())


@router.get(
    "/repositories/{repository:path}/manifests/{reference}/scan",
    response_model=ScanReport,
    summary="The scan report of an image (for an index, one per platform)",
)
def get_report(repository: str, reference: str, svc: ServicesDep, caller: Caller, findings: bool = True) -> ScanReport:
    m = _manifest(svc, caller, repository, reference, Permission.PULL)
    denylist = svc.scan_policies.policy(project_of(repository)).licence_denylist
    listed = _images(m.media_type, m.content, m.digest)
    images = [_image_report(svc, d, plat, findings, denylist) for d, plat in listed]
    held = svc.quarantines.active(project_of(repository), list(dict.fromkeys([m.digest, *(d for d, _ in listed)])))
    for image in images:
        image.quarantined = any(q.digest == image.digest for q in held)
    return ScanReport(
        digest=m.digest,
        media_type=m.media_type,
        images=images,
        quarantine=quarantine_out(held[0]) if held else None,
    )


@router.post(
    "/repositories/{repository:path}/manifests/{reference}/scan",
    status_code=202,
    summary="Scan (again) now: queued for the background scanner",
)
def request_scan(repository: str, reference: str, svc: ServicesDep, caller: Caller) -> Response:
    m = _manifest(svc, caller, repository, reference, Permission.PUSH)
    svc.scans.request(repository, m.digest)
    return Response(status_code=202)


@dataclass
class SbomChoice:
    """The query of both SBOM routes: which format, and which image of an index."""

    format: Literal["cyclonedx", "spdx"] = "cyclonedx"
    platform: str | None = None


SbomQuery = Annotated[SbomChoice, Depends()]


def _sbom(
    svc: Services, caller: Identity, repository: str, reference: str, choice: SbomChoice
) -> tuple[bytes, str, str]:
    """The rendered SBOM of one image (an index needs `platform`): (document, media type, image digest)."""
    from dockyard.scan.report import render_cyclonedx, render_spdx
    from dockyard.services.scanning.sbom import CYCLONEDX, SPDX

    m = _manifest(svc, caller, repository, reference, Permission.PULL)
    images = _images(m.media_type, m.content, m.digest)
    chosen = [d for d, plat in images if choice.platform is None or plat == choice.platform]
    if len(chosen) != 1:
        platforms = ", ".join(p or "?" for _, p in images)
        raise NotFound(f"choose one platform with ?platform= (this index has {platforms})", {"platforms": platforms})
    result = svc.scans.result(chosen[0])
    if result is None:
        raise NotFound(f"image {chosen[0]} has not been scanned", {"digest": chosen[0]})
    name = f"{repository}@{chosen[0]}"
    if choice.format == "spdx":
        return json.dumps(render_spdx(result, name=name, namespace_seed=name)).encode(), SPDX, chosen[0]
    return render_cyclonedx(result, name=name, version=chosen[0]).encode(), CYCLONEDX, chosen[0]


@router.get(
    "/repositories/{repository:path}/manifests/{reference}/sbom",
    summary="The image's inventory as an SBOM (CycloneDX 1.6 or SPDX 2.3 JSON)",
    response_class=Response,
    responses={
        200: {
            "description": "The SBOM document",
            "content": {
                "application/vnd.cyclonedx+json": {"schema": {"type": "object"}},
                "application/spdx+json": {"schema": {"type": "object"}},
            },
        }
    },
)
def get_sbom(repository: str, reference: str, svc: ServicesDep, caller: Caller, choice: SbomQuery) -> Response:
    document, media_type, _ = _sbom(svc, caller, repository, reference, choice)
    return Response(document, media_type=media_type)


class AttachedOut(BaseModel):
    digest: str = Field(description="The SBOM artifact's manifest digest (a referrer of the image).")
    artifact_type: str


@router.post(
    "/repositories/{repository:path}/manifests/{reference}/sbom/attach",
    response_model=AttachedOut,
    status_code=201,
    summary="Attach the SBOM to the image as an OCI referrer artifact",
)
def attach_sbom(repository: str, reference: str, svc: ServicesDep, caller: Caller, choice: SbomQuery) -> AttachedOut:
    from dockyard.services.scanning.sbom import attach_sbom as attach

    project_permission(svc, caller, project_of(repository), Permission.PUSH)
    document, media_type, image = _sbom(svc, caller, repository, reference, choice)
    digest = attach(svc.uploads, svc.manifests, repository, image, document, media_type)
    return AttachedOut(digest=digest, artifact_type=media_type)


def _visible(svc: Services, caller: Identity, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep only the locations the caller may pull from, and images with at least one."""
    allowed: dict[str, bool] = {}
    out = []
    for row in rows:
        keep = []
        for loc in row.pop("locations"):
            project = project_of(loc["repository"])
            if project not in allowed:
                allowed[project] = svc.policy.can(caller, project, Permission.PULL)
            if allowed[project]:
                keep.append({**loc, "quarantined": bool(svc.quarantines.active(project, [row["digest"]]))})
        if keep:
            out.append({**row, "locations": keep})
    return out


@router.get("/vulnerabilities/{advisory}/images", summary="Images affected by an advisory or CVE id")
def affected_images(advisory: str, svc: ServicesDep, caller: Caller) -> list[dict[str, Any]]:
    signed_in(caller)
    return _visible(svc, caller, svc.scans.images_affected_by(advisory))


@router.get("/packages/images", summary="Images that contain a package (at a version)")
def images_with_package(
    svc: ServicesDep, caller: Caller, name: str = Query(min_length=1), version: str | None = None
) -> list[dict[str, Any]]:
    signed_in(caller)
    return _visible(svc, caller, svc.scans.images_with_package(name, version))


@router.get("/projects/{name}/scan-policy", response_model=ScanPolicy)
def get_policy(name: str, svc: ServicesDep, caller: Caller) -> ScanPolicy:
    project_permission(svc, caller, name, Permission.PROJECT_READ)
    return _policy_out(svc.projects.scan_policy(name))


@router.patch("/projects/{name}/scan-policy", response_model=ScanPolicy, summary="Change the scanning rules")
def set_policy(name: str, body: ScanPolicyPatch, svc: ServicesDep, caller: Caller) -> ScanPolicy:
    project_permission(svc, caller, name, Permission.PROJECT_UPDATE)
    policy = svc.projects.set_scan_policy(name, **body.model_dump(exclude_unset=True))
    svc.gates.forget(name)
    return _policy_out(policy)


def _policy_out(policy: dict[str, Any]) -> ScanPolicy:
    severity = policy["block_severity"]
    return ScanPolicy(**{**policy, "block_severity": severity.lower() if severity else None})


@router.get("/vulndb", summary="The vulnerability database: sources, last check, last change, counts")
def vulndb_status(svc: ServicesDep, caller: Caller) -> dict[str, Any]:
    signed_in(caller)
    db = svc.scans.vulndb
    info = svc.scans.database()
    return {
        **info.as_dict(),
        "stale_after_seconds": svc.scans.stale_after,
        "sources": [asdict(s) for s in db.sources()],
        "queued_scans": svc.scans.pending(),
        "update": _update_status(svc, caller),
    }


def _update_status(svc: Services, caller: Identity) -> dict[str, Any]:
    status = maintenance.run_status(svc.db, maintenance.VULNDB)
    if not svc.policy.can_system(caller, SystemPermission.UPDATE_VULNDB):  # who asked: theirs to know
        status.pop("requested_by", None)
    return status


@router.post(
    "/vulndb/update",
    status_code=202,
    summary="Ask for a database update and re-evaluation of stored images now (system admins)",
    description="The background duty does it (downloads take long): `update` in GET /vulndb tells how it went.",
)
def vulndb_update(svc: ServicesDep, caller: Caller, response: Response) -> dict[str, Any]:
    require_system(svc, caller, SystemPermission.UPDATE_VULNDB)
    update = maintenance.request_run(svc.db, maintenance.VULNDB, caller.subject)
    response.headers["Location"] = "/api/v1/vulndb"
    return {"update": update, "generation": svc.scans.vulndb.generation}
