"""Security: which images an advisory affects or contain a package (where the caller may pull), who
pulled them (the exposure report), the quarantined images, and the vulnerability database's state
(an update on demand for system administrators)."""

from __future__ import annotations

from fastapi import Response as FastApiResponse
from starlette.responses import RedirectResponse, Response

from dockyard.api.management import quarantine as quarantine_api
from dockyard.api.management import scanning as api
from dockyard.services.auth.permissions import SystemPermission
from dockyard.ui.views.trust import exposure, exposure_query
from dockyard.ui.web import Page

SHOWN = 200  # rows of a search shown on the page (the service reads at most 1,000)


def security(page: Page) -> Response:
    q, form = exposure_query(page)
    advisory, package, version = form["advisory"], form["package"], form["version"] or None
    rows = None
    if advisory:
        rows = api.affected_images(advisory, page.svc, page.identity)
    elif package:
        rows = api.images_with_package(page.svc, page.identity, package, version)
    quarantined = quarantine_api.list_quarantined(page.svc, page.identity)
    return page.render(
        "security.html",
        advisory=advisory,
        package=package,
        version=version or "",
        since=form["since"],
        until=form["until"],
        report=exposure(page, q) if q is not None else None,
        quarantined=quarantined,
        may_release={
            p for p in {x.project for x in quarantined} if quarantine_api.can_manage(page.svc, page.identity, p)
        },
        rows=rows[:SHOWN] if rows is not None else None,
        more=rows is not None and len(rows) > SHOWN,
        vulndb=api.vulndb_status(page.svc, page.identity),
        may_update=page.svc.policy.can_system(page.identity, SystemPermission.UPDATE_VULNDB),
    )


def update_vulndb(page: Page) -> Response:
    api.vulndb_update(page.svc, page.identity, FastApiResponse())
    return RedirectResponse("/security", status_code=303)
