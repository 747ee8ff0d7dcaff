"""`dockyard project`: projects, their members, quotas and the permission matrix."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from dockyard.commands.common import command, table, usage_error
from dockyard.services.auth.permissions import Role, markdown_table
from dockyard.wiring import Services

app = typer.Typer(help="Manage projects and their members.", no_args_is_help=True)

Principal = Annotated[str, typer.Argument(help="user:NAME or group:NAME")]


@command(app, "create")
def project_create(
    svc: Services,
    name: str,
    public: Annotated[bool, typer.Option(help="Anyone, even anonymous, may pull.")] = False,
    owner: Annotated[str | None, typer.Option(help="User to make project admin.")] = None,
) -> str:
    """Create a project."""
    svc.projects.create(name, public, creator=owner)
    return f"created project {name}" + (" (public)" if public else "")


@command(app, "list")
def project_list(svc: Services) -> None:
    """List projects."""
    table(["project", "public", "created by"], [[p.name, p.public, p.created_by] for p in svc.projects.list_projects()])


@command(app, "set-public")
def project_set_public(
    svc: Services, name: str, public: Annotated[bool, typer.Option("--public/--private")] = True
) -> str:
    """Make a project public or private."""
    svc.projects.update(name, public=public)
    return f"project {name} is now {'public' if public else 'private'}"


@command(app, "delete")
def project_delete(svc: Services, name: str) -> str:
    """Delete an empty project."""
    svc.projects.delete(name)
    return f"deleted project {name}"


def _known_role(value: str) -> str:
    """Refuse an unknown role while the arguments are parsed: before the database is opened."""
    try:
        Role.parse(value)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    return value


@command(app, "grant")
def project_grant(
    svc: Services,
    project: str,
    principal: Principal,
    role: Annotated[str, typer.Argument(help="guest, developer, maintainer or admin", callback=_known_role)],
) -> str:
    """Grant a role in a project to a user or a group (replacing any role they had)."""
    kind, _, name = principal.partition(":")
    parsed = Role.parse(role)
    svc.projects.set_member(project, kind, name, parsed)
    return f"{principal} is {parsed.label} in {project}"


@command(app, "revoke")
def project_revoke(svc: Services, project: str, principal: Principal) -> str:
    """Remove a user's or group's role in a project."""
    kind, _, name = principal.partition(":")
    svc.projects.remove_member(project, kind, name)
    return f"{principal} no longer has a role in {project}"


@command(app, "members")
def project_members(svc: Services, project: str) -> None:
    """List a project's members."""
    members = svc.projects.members(project)
    table(["kind", "name", "role"], [[m.principal_kind, m.principal, m.role.label] for m in members])


@app.command("permissions")
def project_permissions() -> None:
    """Print the permission matrix (least role per permission)."""
    typer.echo(markdown_table())


def parse_size(text: str) -> int | None:
    """`none`, a number of bytes, or a number with K/M/G/T (powers of 1024; KB, KiB, … accepted)."""
    value = text.strip().upper()
    if value in ("NONE", "OFF", ""):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", value)
    if m is None:
        raise typer.BadParameter(f"not a size: {text!r} (e.g. 500M, 20GiB, none)")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2)])


@command(app, "quota")
def project_quota(
    svc: Services, name: str, size: Annotated[str, typer.Argument(help="e.g. 500M, 20G, or none")]
) -> str:
    """Set or lift a project's storage quota."""
    project = svc.projects.set_quota(name, parse_size(size))
    return f"project {name}: quota {project.quota_bytes or 'none'}, using {project.used_bytes} bytes"
