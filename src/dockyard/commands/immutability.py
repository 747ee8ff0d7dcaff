"""`dockyard project immutable`: a project's tag immutability rules."""

from __future__ import annotations

import typer

from dockyard.commands.common import command
from dockyard.wiring import Services

app = typer.Typer(help="Tag immutability rules of a project.", no_args_is_help=True)


@command(app, "add")
def immutable_add(svc: Services, project: str, pattern: str) -> str:
    """Make tags matching PATTERN (e.g. 'v*') immutable in PROJECT."""
    svc.tag_rules.add(project, pattern, creator=None)
    return f"tags matching {pattern!r} in {project} are immutable"


@command(app, "remove")
def immutable_remove(svc: Services, project: str, pattern: str) -> str:
    """Remove an immutability rule."""
    svc.tag_rules.remove(project, pattern)
    return f"removed rule {pattern!r} from {project}"


@command(app, "list")
def immutable_list(svc: Services, project: str) -> None:
    """List a project's immutability rules."""
    for rule in svc.tag_rules.list_rules(project):
        typer.echo(rule.pattern)
