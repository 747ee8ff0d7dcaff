"""`dockyard robot`: robot accounts."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from dockyard.commands.common import command, expiry, table
from dockyard.wiring import Services

app = typer.Typer(help="Manage robot accounts.", no_args_is_help=True)


@command(app, "create")
def robot_create(
    svc: Services,
    name: str,
    project: Annotated[
        list[str], typer.Option("--project", "-p", help="PROJECT:ACTIONS, e.g. team-a:pull,push (repeatable)")
    ],
    expires_days: Annotated[float | None, typer.Option(help="Expire after this many days.")] = None,
    description: str | None = None,
) -> str:
    """Create a robot account; prints its secret once."""
    permissions: dict[str, list[str]] = {}
    for item in project:
        proj, _, actions = item.partition(":")
        permissions[proj] = [a for a in actions.split(",") if a] or ["pull"]
    created = svc.robots.create(name, permissions, expiry(expires_days), description)
    return f"created {created.robot.name}\nsecret (shown once): {created.secret}"


def _expires(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)) if at else "never"


@command(app, "list")
def robot_list(svc: Services, project: str | None = None) -> None:
    """List robot accounts."""
    table(
        ["robot", "permissions", "expires", "disabled"],
        [
            [
                r.name,
                "; ".join(f"{p}:{','.join(a)}" for p, a in r.permissions.items()),
                _expires(r.expires_at),
                r.disabled,
            ]
            for r in svc.robots.list_robots(project)
        ],
    )


@command(app, "disable")
def robot_disable(
    svc: Services, name: str, disabled: Annotated[bool, typer.Option("--disable/--enable")] = True
) -> str:
    """Disable (or enable) a robot account."""
    svc.robots.set_disabled(name, disabled)
    return f"{name} {'disabled' if disabled else 'enabled'}"


@command(app, "delete")
def robot_delete(svc: Services, name: str) -> str:
    """Delete a robot account."""
    svc.robots.delete(name)
    return f"deleted {name}"
