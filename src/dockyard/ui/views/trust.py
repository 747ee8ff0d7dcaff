"""Trust pages: a project's keys, certificates and signature and quarantine rules; quarantining and
releasing an image; a tag's history with revert; the exposure report. Each form calls the management
API's own operation (or the service after the API's own permission check)."""

from __future__ import annotations

import re
import time
from calendar import timegm
from typing import Any

from starlette.responses import RedirectResponse, Response

from dockyard.api.management import exposure as exposure_api
from dockyard.api.management import history as history_api
from dockyard.api.management import quarantine as quarantine_api
from dockyard.api.management import trust as trust_api
from dockyard.api.management.audit import CURSOR_PATTERN
from dockyard.oci.names import project_of
from dockyard.services.auth.permissions import Permission
from dockyard.services.errors import InvalidInput, ManifestUnknown
from dockyard.services.exposure import ExposureQuery
from dockyard.ui.views.settings import SEVERITIES, _list
from dockyard.ui.web import Page

HISTORY_PAGE = 50
PULLS_PAGE = 50
DETAIL = 50  # current tags, history intervals, identities and sources shown; the exports hold them all


def _project(page: Page) -> str:
    return str(page.request.path_params["project"])


# --- a project's trust material and rules ----------------------------------------------------------
def trust(page: Page) -> Response:
    name = _project(page)
    svc, me = page.svc, page.identity
    keys = trust_api.keys_in(name, svc, me)  # refused (404) where the project is not visible
    perms = svc.policy.permissions(me, name)[1]
    return page.render(
        "trust.html",
        project=name,
        perms=perms,
        P=Permission,
        keys=keys,
        certificates=trust_api.certificates_in(name, svc, me),
        system_keys=trust_api.keys_in(None, svc, me),
        system_certificates=trust_api.certificates_in(None, svc, me),
        policy=trust_api.get_policy(name, svc, me),
        auto=quarantine_api.get_policy(name, svc, me),
        severities=SEVERITIES,
    )


def _back(page: Page) -> Response:
    return RedirectResponse(f"/projects/{_project(page)}/trust", status_code=303)


def set_trust_policy(page: Page) -> Response:
    body = trust_api.TrustPolicyPatch.model_validate(
        {"require_signature": page.field("require_signature") == "on", "signed_tags": _list(page.field("signed_tags"))}
    )
    trust_api.set_policy(_project(page), body, page.svc, page.identity)
    return _back(page)


def set_auto_quarantine(page: Page) -> Response:
    body = quarantine_api.QuarantinePolicyPatch.model_validate(
        {"auto_quarantine_severity": page.field("auto_quarantine_severity") or None}
    )
    quarantine_api.set_policy(_project(page), body, page.svc, page.identity)
    return _back(page)


def add_key(page: Page) -> Response:
    body = trust_api.KeyIn.model_validate({"name": page.field("name"), "public_key": page.field("public_key")})
    trust_api.add_key_in(_project(page), body, page.svc, page.identity)
    return _back(page)


def delete_key(page: Page) -> Response:
    trust_api.delete_key_in(_project(page), str(page.request.path_params["key"]), page.svc, page.identity)
    return _back(page)


def add_certificate(page: Page) -> Response:
    body = trust_api.CertificateIn.model_validate(
        {
            "name": page.field("name"),
            "certificate": page.field("certificate"),
            "identities": [x.strip() for x in page.field("identities").splitlines() if x.strip()],
        }
    )
    trust_api.add_certificate_in(_project(page), body, page.svc, page.identity)
    return _back(page)


def delete_certificate(page: Page) -> Response:
    trust_api.delete_certificate_in(_project(page), str(page.request.path_params["cert"]), page.svc, page.identity)
    return _back(page)


# --- quarantine ------------------------------------------------------------------------------------
def _image_page(page: Page) -> Response:
    repo, digest = page.request.path_params["repository"], page.request.path_params["digest"]
    return RedirectResponse(f"/repositories/{repo}/images/{digest}", status_code=303)


def quarantine(page: Page) -> Response:
    repo, digest = page.request.path_params["repository"], page.request.path_params["digest"]
    body = quarantine_api.QuarantineIn.model_validate({"reason": page.field("reason")})
    quarantine_api.quarantine(repo, digest, body, page.svc, page.identity)
    return _image_page(page)


def release(page: Page) -> Response:
    repo, digest = page.request.path_params["repository"], page.request.path_params["digest"]
    quarantine_api.release(repo, digest, page.svc, page.identity)
    if page.field("back") == "security":
        return RedirectResponse("/security#quarantined", status_code=303)
    return _image_page(page)


# --- a tag's history -------------------------------------------------------------------------------
def tag_history(page: Page) -> Response:
    repo, tag = page.request.path_params["repository"], page.request.path_params["tag"]
    project = project_of(repo)
    before = cursor(page)
    found = history_api.tag_history(repo, tag, page.svc, page.identity, limit=HISTORY_PAGE, before=before)
    perms = page.svc.policy.permissions(page.identity, project)[1]
    try:
        current: str | None = page.svc.manifests.get(repo, tag).digest
    except ManifestUnknown:  # the tag was deleted: its history stays readable
        current = None
    return page.render(
        "history.html",
        repository=repo,
        project=project,
        tag=tag,
        found=found,
        current=current,
        before=before,
        may_revert=Permission.PUSH in perms,
    )


def revert(page: Page) -> Response:
    repo, tag = page.request.path_params["repository"], page.request.path_params["tag"]
    body = history_api.RevertIn.model_validate({"digest": page.field("digest")})
    history_api.revert_tag(repo, tag, body, page.svc, page.identity)
    return RedirectResponse(f"/repositories/{repo}/tags/{tag}/history", status_code=303)


# --- exposure --------------------------------------------------------------------------------------
def cursor(page: Page) -> str | None:
    """`before`, a page cursor, held to the management API's own pattern for it."""
    value = page.query.get("before") or None
    if value is not None and not re.fullmatch(CURSOR_PATTERN, value):
        raise InvalidInput("invalid paging cursor")
    return value


def _day(value: str, what: str, end: bool = False) -> float | None:
    """A YYYY-MM-DD date (UTC) as UNIX time: the day's start, or for `end` the next day's start."""
    if not value:
        return None
    try:
        day = timegm(time.strptime(value, "%Y-%m-%d"))
    except ValueError:
        raise InvalidInput(f"{what} is a date: YYYY-MM-DD") from None
    return float(day + 86400 if end else day)


def exposure_query(page: Page) -> tuple[ExposureQuery | None, dict[str, str]]:
    """The report's question from the query string (None: none asked), and the form's values."""
    form = {k: page.query.get(k, "").strip()[:128] for k in ("advisory", "package", "version", "since", "until")}
    if not form["advisory"] and not form["package"]:
        return None, form
    since, until = _day(form["since"], "since"), _day(form["until"], "until", end=True)
    q = ExposureQuery(form["advisory"] or None, form["package"] or None, form["version"] or None, since, until)
    return q, form


def exposure(page: Page, q: ExposureQuery) -> dict[str, Any]:
    projects = exposure_api.readable_projects(page.svc, page.identity)
    return page.svc.exposure.report(q, projects, PULLS_PAGE, cursor(page), detail=DETAIL)


def exposure_export(page: Page) -> Response:
    q, _form = exposure_query(page)
    if q is None:
        raise InvalidInput("name an advisory or a package")
    fmt = page.query.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput("format is csv or jsonl")
    response = exposure_api.exposure(
        page.svc,
        page.identity,
        advisory=q.advisory,
        package=q.package,
        version=q.version,
        since=q.since,
        until=q.until,
        format=fmt,
    )
    assert isinstance(response, Response)
    return response
