"""Projects, the repositories of one, and its members and robot accounts."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from dockyard.api.management import projects as api
from dockyard.api.management import robots as robots_api
from dockyard.api.management.deps import project_permission
from dockyard.api.management.models import MemberIn, ProjectIn, RobotIn, RobotPatch
from dockyard.db.engine import now
from dockyard.services.auth.permissions import Permission
from dockyard.services.errors import InvalidInput
from dockyard.services.registry.browse import TAG_COUNT_CAP
from dockyard.ui.web import Page

PER_PAGE = 50


def _page_number(page: Page) -> int:
    try:
        n = int(page.query.get("page", "1"))
    except ValueError:
        raise InvalidInput("page must be a number") from None
    if n < 1 or n > 100_000:
        raise InvalidInput("page out of range")
    return n


def projects(page: Page) -> Response:
    n = _page_number(page)
    visible = page.svc.policy.visible_projects(page.identity)
    shown = visible[(n - 1) * PER_PAGE : n * PER_PAGE]
    stats = page.ui.browse.project_stats(p.id for p in shown)
    rows = [(api.project_out(page.svc, page.identity, p), stats[p.id]) for p in shown]
    return page.render(
        "projects.html",
        rows=rows,
        page_no=n,
        more=len(visible) > n * PER_PAGE,
        may_create=page.svc.policy.can_create_projects(page.identity),
    )


def create_project(page: Page) -> Response:
    body = ProjectIn(name=page.field("name"), public=page.field("public") == "on")
    created = api.create_project(body, page.svc, page.identity)
    return RedirectResponse(f"/projects/{created.name}", status_code=303)


def _perms(page: Page, name: str) -> frozenset[Permission]:
    return page.svc.policy.permissions(page.identity, name)[1]


def repositories(page: Page) -> Response:
    name = page.request.path_params["project"]
    project_permission(page.svc, page.identity, name, Permission.PULL)
    project = page.svc.projects.get(name)
    q = page.query.get("q", "")[:255]
    found = page.ui.browse.repositories(project.id, q, _page_number(page), PER_PAGE)
    return page.render(
        "repositories.html",
        project=api.project_out(page.svc, page.identity, project),
        found=found,
        tag_cap=TAG_COUNT_CAP,
        q=q,
        perms=_perms(page, name),
        P=Permission,
    )


def members(page: Page) -> Response:
    name = page.request.path_params["project"]
    members = api.list_members(name, page.svc, page.identity)  # member:read, the API's own check
    perms = _perms(page, name)
    robots = robots_api.list_robots(page.svc, page.identity, name) if Permission.ROBOT_READ in perms else None
    return page.render(
        "members.html",
        project=name,
        members=members,
        robots=robots,
        perms=perms,
        P=Permission,
        created=None,
    )


def create_robot(page: Page) -> Response:
    name = page.request.path_params["project"]
    actions = [a for a in ("pull", "push", "delete") if page.field(f"action_{a}") == "on"]
    if not actions:
        raise InvalidInput("choose at least one action for the robot")
    days = page.field("expires_days")
    expires_at = None
    if days:
        try:
            expires_at = now() + float(days) * 86400
        except ValueError:
            raise InvalidInput("expiry must be a number of days") from None
    body = RobotIn.model_validate(
        {
            "name": page.field("name"),
            "permissions": {name: actions},
            "expires_at": expires_at,
            "description": page.field("description") or None,
        }
    )
    created = robots_api.create_robot(body, page.svc, page.identity)
    perms = _perms(page, name)
    # The secret is shown on this one answer and never again.
    return page.render(
        "members.html",
        status=201,
        project=name,
        members=api.list_members(name, page.svc, page.identity),
        robots=robots_api.list_robots(page.svc, page.identity, name),
        perms=perms,
        P=Permission,
        created=created,
    )


def set_robot_disabled(page: Page) -> Response:
    name = page.request.path_params["project"]
    robot = page.request.path_params["robot"]
    robots_api.update_robot(robot, RobotPatch(disabled=page.field("disabled") == "1"), page.svc, page.identity)
    return RedirectResponse(f"/projects/{name}/members", status_code=303)


def set_member(page: Page) -> Response:
    name = page.request.path_params["project"]
    kind = page.field("kind") or "user"
    api.set_member(
        name,
        kind,
        page.field("principal"),
        MemberIn.model_validate({"role": page.field("role")}),
        page.svc,
        page.identity,
    )
    return RedirectResponse(f"/projects/{name}/members", status_code=303)


def remove_member(page: Page) -> Response:
    name, kind, principal = (page.request.path_params[k] for k in ("project", "kind", "principal"))
    api.remove_member(name, kind, principal, page.svc, page.identity)
    return RedirectResponse(f"/projects/{name}/members", status_code=303)
