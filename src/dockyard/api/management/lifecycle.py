"""Tag immutability, retention, quotas and garbage collection."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response

from dockyard.api.management.deps import Caller, ServicesDep, project_permission, require_system
from dockyard.api.management.models import (
    ProjectOut,
    QuotaIn,
    RemovalOut,
    RetentionIn,
    RetentionOut,
    TagRuleIn,
    TagRuleOut,
    problems,
)
from dockyard.api.management.projects import project_out
from dockyard.services.auth.permissions import Permission, SystemPermission
from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.retention import RetentionPolicy

router = APIRouter(tags=["lifecycle"])


@router.get("/projects/{name}/immutable-tags", response_model=list[TagRuleOut])
def list_rules(name: str, svc: ServicesDep, caller: Caller) -> list[TagRuleOut]:
    project_permission(svc, caller, name, Permission.PROJECT_READ)
    return [
        TagRuleOut(pattern=r.pattern, created_by=r.created_by, created_at=r.created_at)
        for r in svc.tag_rules.list_rules(name)
    ]


@router.post(
    "/projects/{name}/immutable-tags",
    response_model=TagRuleOut,
    status_code=201,
    summary="Add a rule",
    responses=problems(409),
)
def add_rule(name: str, body: TagRuleIn, svc: ServicesDep, caller: Caller) -> TagRuleOut:
    project_permission(svc, caller, name, Permission.TAG_POLICY_MANAGE)
    rule = svc.tag_rules.add(name, body.pattern, caller.subject)
    return TagRuleOut(pattern=rule.pattern, created_by=rule.created_by, created_at=rule.created_at)


@router.delete(
    "/projects/{name}/immutable-tags/{pattern}", status_code=204, summary="Remove a rule (system administrators)"
)
def remove_rule(name: str, pattern: str, svc: ServicesDep, caller: Caller) -> Response:
    require_system(svc, caller, SystemPermission.REMOVE_TAG_RULES)
    svc.tag_rules.remove(name, pattern)
    return Response(status_code=204)


@router.get("/projects/{name}/retention", response_model=RetentionOut | None)
def get_retention(name: str, svc: ServicesDep, caller: Caller) -> RetentionOut | None:
    project_permission(svc, caller, name, Permission.PROJECT_READ)
    found = svc.retention.get_policy(name)
    if found is None:
        return None
    policy, enabled = found
    return RetentionOut(**asdict(policy), enabled=enabled)


@router.put("/projects/{name}/retention", response_model=RetentionOut, summary="Set the retention policy")
def set_retention(name: str, body: RetentionIn, svc: ServicesDep, caller: Caller) -> RetentionOut:
    project_permission(svc, caller, name, Permission.TAG_POLICY_MANAGE)
    policy = RetentionPolicy(body.keep_last, body.keep_days, body.keep_patterns, body.remove_untagged)
    svc.retention.set_policy(name, policy, body.enabled)
    return RetentionOut(**asdict(policy), enabled=body.enabled)


@router.post("/projects/{name}/retention/run", response_model=list[RemovalOut], summary="Apply (or dry-run) now")
def run_retention(name: str, svc: ServicesDep, caller: Caller, dry_run: bool = True) -> list[RemovalOut]:
    project_permission(svc, caller, name, Permission.TAG_POLICY_MANAGE)
    return [RemovalOut(**asdict(r)) for r in svc.retention.run(name, dry_run=dry_run)]


@router.put("/projects/{name}/quota", response_model=ProjectOut, summary="Set a storage quota (system administrators)")
def set_quota(name: str, body: QuotaIn, svc: ServicesDep, caller: Caller) -> ProjectOut:
    require_system(svc, caller, SystemPermission.SET_QUOTAS)
    return project_out(svc, caller, svc.projects.set_quota(name, body.quota_bytes))


@router.post(
    "/system/gc",
    summary="Collect garbage now, or report what would go (system administrators)",
    description="A real run takes the background collector's lease: 409 while another process collects. "
    "A dry run only reads.",
)
def run_gc(svc: ServicesDep, caller: Caller, dry_run: bool = True) -> dict[str, object]:
    require_system(svc, caller, SystemPermission.RUN_GC)
    report = svc.collector.run_now(leases.holder_name(f"api:{caller.subject}"), dry_run=dry_run)
    return {
        **report.as_dict(),
        "dry_run": dry_run,
        "removed": {
            "manifests": [f"{r}@{d}" for r, d in report.manifests],
            "blobs": report.blobs,
        },
    }
