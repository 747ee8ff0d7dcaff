"""Tags of a repository, deleting one, and an image's detail (platforms, layers, config, scan)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import RedirectResponse, Response

from dockyard.api.auth import external_base
from dockyard.api.management import quarantine as quarantine_api
from dockyard.api.management import scanning as scan_api
from dockyard.api.management.deps import project_permission
from dockyard.oci.manifest import InvalidManifest, parse_manifest
from dockyard.oci.names import project_of
from dockyard.scan.layers import platform_name
from dockyard.services.auth.permissions import Permission
from dockyard.services.errors import InvalidInput
from dockyard.ui.web import Page

PER_PAGE = 50
CONFIG_LIMIT = 4 * 1024 * 1024  # an image config is a few KiB; never read a huge blob into a page
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "negligible": 4, "unknown": 5}


def _host(page: Page) -> str:
    return external_base(page.request, page.svc.settings).split("://", 1)[-1]


def tags(page: Page) -> Response:
    repo = page.request.path_params["repository"]
    project = project_of(repo)
    project_permission(page.svc, page.identity, project, Permission.PULL)
    q = page.query.get("q", "")[:128]
    after = page.query.get("after") or None
    found = page.ui.browse.tags(repo, q, after, PER_PAGE)
    perms = page.svc.policy.permissions(page.identity, project)[1]
    digests = [t.digest for t in found.rows]
    shown = {d for t in found.rows for d in (t.digest, *t.children)}
    held = {x.digest: x for x in page.svc.quarantines.active(project, shown)}
    return page.render(
        "tags.html",
        repository=repo,
        project=project,
        found=found,
        signatures=page.svc.signatures.states(repo, digests),
        quarantined={t.name: next((held[d] for d in (t.digest, *t.children) if d in held), None) for t in found.rows},
        movers=page.svc.history.last_moves(repo, [t.name for t in found.rows]),
        pulled=page.svc.audit.last_pull_of(repo, digests),
        q=q,
        after=after,
        host=_host(page),
        may_delete=Permission.DELETE in perms,
    )


def confirm_delete(page: Page) -> Response:
    repo, tag = page.request.path_params["repository"], page.request.path_params["tag"]
    project_permission(page.svc, page.identity, project_of(repo), Permission.DELETE)
    stored = page.svc.manifests.get(repo, tag)
    return page.render("delete_tag.html", repository=repo, tag=tag, digest=stored.digest)


def delete_tag(page: Page) -> Response:
    repo, tag = page.request.path_params["repository"], page.request.path_params["tag"]
    project_permission(page.svc, page.identity, project_of(repo), Permission.DELETE)
    if page.field("confirm") != tag:
        raise InvalidInput("type the tag's name to confirm the deletion")
    page.svc.manifests.delete(repo, tag)  # the registry's own rules: immutability, audit
    return RedirectResponse(f"/repositories/{repo}/tags", status_code=303)


def sbom(page: Page) -> Response:
    """An image's SBOM as a download (CycloneDX or SPDX), from the management API's own operation."""
    repo, digest = page.request.path_params["repository"], page.request.path_params["digest"]
    fmt = page.query.get("format", "cyclonedx")
    if fmt not in ("cyclonedx", "spdx"):
        raise InvalidInput("format is cyclonedx or spdx")
    platform = page.query.get("platform") or None
    choice = scan_api.SbomChoice(format=fmt, platform=platform)
    response = scan_api.get_sbom(repo, digest, page.svc, page.identity, choice)
    name = f"sbom-{digest.split(':', 1)[-1][:12]}.{'cdx' if fmt == 'cyclonedx' else 'spdx'}.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _config(page: Page, digest: str, size: int) -> dict[str, Any]:
    if size > CONFIG_LIMIT:
        return {}
    try:
        data = b"".join(page.svc.blobs.read(digest))
        doc = json.loads(data)
    except (ValueError, OSError):
        return {}
    return doc if isinstance(doc, dict) else {}


def image(page: Page) -> Response:
    repo, digest = page.request.path_params["repository"], page.request.path_params["digest"]
    project = project_of(repo)
    project_permission(page.svc, page.identity, project, Permission.PULL)
    stored = page.svc.manifests.get(repo, digest)
    facts = page.ui.browse.image(repo, stored.digest)
    try:
        parsed = parse_manifest(stored.content, stored.media_type, max_bytes=None)
    except InvalidManifest:
        parsed = None
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    if parsed is not None and parsed.config is not None:
        config = _config(page, parsed.config.digest, parsed.config.size)
        history = [h for h in config.get("history", []) if isinstance(h, dict) and not h.get("empty_layer")]
    platforms = []
    if parsed is not None:
        for d in parsed.manifests:
            platforms.append((d, platform_name(d.platform) if d.platform else "—"))
    found = config.get("config")
    inner: dict[str, Any] = found if isinstance(found, dict) else {}
    referrers = page.svc.manifests.referrers(repo, stored.digest).get("manifests", [])
    report = scan_api.get_report(repo, stored.digest, page.svc, page.identity, findings=True)
    fixable = page.query.get("fixable") == "1"
    order = page.query.get("sort", "severity")
    findings = []
    for img in report.images:
        for f in img.findings or []:
            if fixable and not f.fixed_version:
                continue
            findings.append((img.platform, f))
    if order == "package":
        findings.sort(key=lambda pf: (pf[1].package, pf[1].advisory_id))
    else:
        findings.sort(key=lambda pf: (SEVERITY_ORDER.get(pf[1].severity, 9), -(pf[1].score or 0), pf[1].package))
    return page.render(
        "image.html",
        repository=repo,
        project=project,
        stored=stored,
        facts=facts,
        parsed=parsed,
        platforms=platforms,
        layers=list(parsed.layers) if parsed else [],
        history=history,
        env=inner.get("Env") or [],
        entrypoint=inner.get("Entrypoint"),
        cmd=inner.get("Cmd"),
        labels=inner.get("Labels") or {},
        annotations=parsed.annotations if parsed else {},
        referrers=referrers,
        report=report,
        findings=findings[:2000],
        truncated=len(findings) > 2000,
        fixable=fixable,
        order=order,
        host=_host(page),
        signatures=page.svc.signatures.of(repo, stored.digest),
        quarantines=page.svc.quarantines.active(project, [stored.digest, *(d.digest for d, _ in platforms)]),
        may_quarantine=quarantine_api.can_manage(page.svc, page.identity, project),
    )
