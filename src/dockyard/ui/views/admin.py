"""Administration (system administrators): users, storage usage, garbage collection status and the
settings in force (secrets masked)."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from dockyard.api.management import lifecycle as lifecycle_api
from dockyard.api.management import system as system_api
from dockyard.api.management import users as api
from dockyard.api.management.deps import require_system
from dockyard.api.management.models import UserIn, UserPatch
from dockyard.services.auth.permissions import SystemPermission
from dockyard.services.errors import InvalidInput
from dockyard.services.lifecycle.collector import DUTY as GC_DUTY
from dockyard.services.lifecycle.maintenance import run_status
from dockyard.ui.web import Page

PER_PAGE = 100

# Each button's change, as the management API's PATCH body.
CHANGES = {
    "disable": UserPatch(disabled=True),
    "enable": UserPatch(disabled=False),
    "promote": UserPatch(is_admin=True),
    "demote": UserPatch(is_admin=False),
}


def admin(page: Page, dry_run: dict[str, object] | None = None) -> Response:
    require_system(page.svc, page.identity, SystemPermission.MANAGE_USERS)
    try:
        n = max(1, int(page.query.get("page", "1")))
    except ValueError:
        raise InvalidInput("page must be a number") from None
    users = api.list_users(page.svc, page.identity)
    shown = users[(n - 1) * PER_PAGE : n * PER_PAGE]
    gc = run_status(page.svc.db, GC_DUTY)
    system: dict[str, Any] = {}
    if page.svc.policy.can_system(page.identity, SystemPermission.READ_SYSTEM):
        system = {
            "storage": system_api.get_storage(page.svc, page.identity),
            "settings": system_api.get_settings(page.svc, page.identity),
        }
    more = len(users) > n * PER_PAGE
    return page.render("admin.html", users=shown, page_no=n, more=more, gc=gc, dry_run=dry_run, **system)


def gc_dry_run(page: Page) -> Response:
    """What garbage collection would remove now (reads only)."""
    report = lifecycle_api.run_gc(page.svc, page.identity, dry_run=True)
    return admin(page, report)


def create_user(page: Page) -> Response:
    body = UserIn(
        username=page.field("username"),
        password=str(page.form.get("password", "")) if page.form is not None else "",
        email=page.field("email") or None,
        is_admin=page.field("is_admin") == "on",
        can_create_projects=page.field("can_create_projects") == "on",
    )
    api.create_user(body, page.svc, page.identity)
    return RedirectResponse("/admin", status_code=303)


def change_user(page: Page) -> Response:
    username, action = page.request.path_params["username"], page.request.path_params["action"]
    if action == "unlock":
        api.unlock_user(username, page.svc, page.identity)
    elif action in CHANGES:
        api.update_user(username, CHANGES[action], page.svc, page.identity)
    else:
        raise InvalidInput(f"unknown action {action!r}")
    return RedirectResponse("/admin", status_code=303)
