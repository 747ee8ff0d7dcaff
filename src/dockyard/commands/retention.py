"""`dockyard retention`: a project's retention policy."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.commands.common import command
from dockyard.wiring import Services

app = typer.Typer(help="Retention policies.", no_args_is_help=True)


@command(app, "set")
def retention_set(
    svc: Services,
    project: str,
    keep_last: Annotated[int | None, typer.Option(help="Keep the N most recently pushed tags per repository.")] = None,
    keep_days: Annotated[float | None, typer.Option(help="Keep tags pushed or pulled within D days.")] = None,
    keep_pattern: Annotated[list[str] | None, typer.Option(help="Keep tags matching (repeatable).")] = None,
    remove_untagged: bool = False,
    disable: Annotated[bool, typer.Option(help="Keep the policy but do not run it on schedule.")] = False,
) -> str:
    """Set a project's retention policy."""
    from dockyard.services.lifecycle.retention import RetentionPolicy

    policy = RetentionPolicy(keep_last, keep_days, list(keep_pattern or []), remove_untagged)
    svc.retention.set_policy(project, policy, enabled=not disable)
    return f"retention policy of {project} set"


@command(app, "run")
def retention_run(
    svc: Services, project: str, dry_run: Annotated[bool, typer.Option(help="List, remove nothing.")] = False
) -> str:
    """Apply a project's retention policy now (or list what it would remove)."""
    removals = svc.retention.run(project, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    lines = (f"  {r.repository}:{r.tag or '<untagged>'} {r.digest} ({r.reason})" for r in removals)
    return "\n".join([f"{verb} {len(removals)}", *lines])
