"""`dockyard token`: users' personal access tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.commands.common import command, expiry, table
from dockyard.wiring import Services

app = typer.Typer(help="Manage users' personal access tokens.", no_args_is_help=True)


@command(app, "create")
def token_create(
    svc: Services,
    username: str,
    name: str,
    expires_days: Annotated[float | None, typer.Option(help="Expire after N days.")] = None,
) -> str:
    """Create a personal access token for a user; prints it once."""
    created = svc.access_tokens.create(username, name, expiry(expires_days))
    return f"token (shown once, use it as {username}'s password): {created.secret}"


@command(app, "list")
def token_list(svc: Services, username: str) -> None:
    """List a user's access tokens."""
    table(
        ["name", "expires", "revoked"], [[t.name, t.expires_at, t.revoked_at] for t in svc.access_tokens.list(username)]
    )


@command(app, "revoke")
def token_revoke(svc: Services, username: str, name: str) -> str:
    """Revoke a user's access token (tokens issued from it stop working too)."""
    svc.access_tokens.revoke(username, name)
    return f"revoked {name}"
