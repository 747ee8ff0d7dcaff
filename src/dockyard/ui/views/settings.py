"""A project's settings: visibility, scanning and pull policy, immutability and retention rules
(with a dry-run preview), quota. Each form calls the management API's operation for it."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from dockyard.api.management import lifecycle as lifecycle_api
from dockyard.api.management import projects as projects_api
from dockyard.api.management import scanning as scanning_api
from dockyard.api.management.deps import project_permission
from dockyard.api.management.models import ProjectPatch, QuotaIn, RetentionIn, TagRuleIn
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.errors import InvalidInput
from dockyard.ui.web import Page

SEVERITIES = ("critical", "high", "medium", "low", "unknown")


def _name(page: Page) -> str:
    return str(page.request.path_params["project"])


def _list(value: str) -> list[str]:
    return [x.strip() for x in value.replace("\n", ",").split(",") if x.strip()]


def _number(value: str, what: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{what} must be a number") from None


def settings(page: Page, status: int = 200, preview: list[Any] | None = None) -> Response:
    name = _name(page)
    project_permission(page.svc, page.identity, name, Permission.PROJECT_READ)
    perms = page.svc.policy.permissions(page.identity, name)[1]
    svc, me = page.svc, page.identity
    return page.render(
        "settings.html",
        status=status,
        project=projects_api.get_project(name, svc, me),
        policy=scanning_api.get_policy(name, svc, me),
        rules=lifecycle_api.list_rules(name, svc, me),
        retention=lifecycle_api.get_retention(name, svc, me),
        preview=preview,
        perms=perms,
        P=Permission,
        may_remove_rules=svc.policy.can_system(me, SystemPermission.REMOVE_TAG_RULES),
        may_set_quota=svc.policy.can_system(me, SystemPermission.SET_QUOTAS),
        severities=SEVERITIES,
    )


def _back(page: Page) -> Response:
    return RedirectResponse(f"/projects/{_name(page)}/settings", status_code=303)


def visibility(page: Page) -> Response:
    projects_api.update_project(_name(page), ProjectPatch(public=page.field("public") == "on"), page.svc, page.identity)
    return _back(page)


def scan_policy(page: Page) -> Response:
    on_push = {"default": None, "on": True, "off": False}.get(page.field("scan_on_push"))
    severity = page.field("block_severity") or None
    body = scanning_api.ScanPolicyPatch.model_validate(
        {
            "scan_on_push": on_push,
            "block_severity": severity,
            "block_unscanned": page.field("block_unscanned") == "on",
            "vulnerability_allowlist": _list(page.field("vulnerability_allowlist")),
            "licence_denylist": _list(page.field("licence_denylist")),
            "block_denied_licences": page.field("block_denied_licences") == "on",
        }
    )
    scanning_api.set_policy(_name(page), body, page.svc, page.identity)
    return _back(page)


def add_rule(page: Page) -> Response:
    lifecycle_api.add_rule(_name(page), TagRuleIn(pattern=page.field("pattern")), page.svc, page.identity)
    return _back(page)


def remove_rule(page: Page) -> Response:
    lifecycle_api.remove_rule(_name(page), page.field("pattern"), page.svc, page.identity)
    return _back(page)


def _retention(page: Page) -> RetentionIn:
    keep_last = _number(page.field("keep_last"), "keep last")
    return RetentionIn.model_validate(
        {
            "keep_last": int(keep_last) if keep_last is not None else None,
            "keep_days": _number(page.field("keep_days"), "keep days"),
            "keep_patterns": _list(page.field("keep_patterns")),
            "remove_untagged": page.field("remove_untagged") == "on",
            "enabled": page.field("enabled") == "on",
        }
    )


def retention(page: Page) -> Response:
    lifecycle_api.set_retention(_name(page), _retention(page), page.svc, page.identity)
    return _back(page)


def retention_preview(page: Page) -> Response:
    """What the saved policy would remove now (a dry run: nothing changes)."""
    found = lifecycle_api.run_retention(_name(page), page.svc, page.identity, dry_run=True)
    return settings(page, preview=found)


def quota(page: Page) -> Response:
    mib = _number(page.field("quota_mib"), "the quota")
    body = QuotaIn(quota_bytes=int(mib * 1024 * 1024) if mib is not None else None)
    lifecycle_api.set_quota(_name(page), body, page.svc, page.identity)
    return _back(page)
