"""`dockyard user`: local users, their flags, passwords and login locks."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.commands.common import command, read_password, services, table
from dockyard.wiring import Services

app = typer.Typer(help="Manage users.", no_args_is_help=True)


@app.command("create")
def user_create(
    username: str,
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
    generate_password: Annotated[bool, typer.Option(help="Generate a password and print it (shown once).")] = False,
    admin: Annotated[bool, typer.Option(help="Make a system administrator.")] = False,
    can_create_projects: Annotated[bool, typer.Option(help="Allow creating projects.")] = False,
    email: str | None = None,
) -> None:
    """Create a local user (with --admin, e.g. the first administrator before the first `serve`)."""
    secret = read_password(password, password_stdin, generate_password)  # asked before the database is opened
    with services() as svc:
        user = svc.users.create(username, secret, admin, email, can_create_projects)
    typer.echo(f"created user {user.username}")
    if generate_password:
        typer.echo(f"generated password (shown once): {secret}")


@command(app, "list")
def user_list(svc: Services) -> None:
    """List users."""
    table(
        ["user", "provider", "admin", "disabled", "groups"],
        [[u.username, u.provider, u.is_admin, u.disabled, ", ".join(u.groups)] for u in svc.users.list_users()],
    )


def _flag(svc: Services, username: str, disabled: bool | None = None, is_admin: bool | None = None) -> str:
    svc.users.update(username, disabled=disabled, is_admin=is_admin)
    return f"updated user {username}"


@command(app, "disable")
def user_disable(svc: Services, username: str) -> str:
    """Disable a user: every login and every token already issued stops working at once."""
    return _flag(svc, username, disabled=True)


@command(app, "enable")
def user_enable(svc: Services, username: str) -> str:
    """Enable a disabled user."""
    return _flag(svc, username, disabled=False)


@command(app, "set-admin")
def user_set_admin(
    svc: Services, username: str, admin: Annotated[bool, typer.Option("--admin/--no-admin")] = True
) -> str:
    """Grant or remove the system administrator role."""
    return _flag(svc, username, is_admin=admin)


@command(app, "delete")
def user_delete(svc: Services, username: str) -> str:
    """Delete a user and their direct project grants."""
    svc.users.delete(username)
    return f"deleted user {username}"


@app.command("set-password")
def user_set_password(
    username: str,
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
    password_stdin: bool = False,
) -> None:
    """Set a local user's password."""
    secret = read_password(password, password_stdin)
    with services() as svc:
        svc.users.set_password(username, secret)
    typer.echo(f"password of {username} set")


@command(app, "unlock")
def user_unlock(
    svc: Services, username: Annotated[str, typer.Argument(help="A user name, or a robot's robot$NAME.")]
) -> str:
    """Clear the failed-login locks and counters of a user or robot, from every address."""
    cleared = svc.authenticator.unlock(username)
    return f"unlocked {username} ({cleared['locks']} lock(s), {cleared['refused']} refused attempt(s) cleared)"
