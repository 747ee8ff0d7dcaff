"""`dockyard audit`: read, export and prune the audit log."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from dockyard.commands.common import command, services, table, usage_error
from dockyard.services.audit import AuditFilter
from dockyard.wiring import Services

app = typer.Typer(help="Read, export and prune the audit log.", no_args_is_help=True)


def _filter(
    project: str | None, repository: str | None, actor: str | None, action: str | None, since_hours: float | None
) -> AuditFilter:
    since = time.time() - since_hours * 3600 if since_hours else None
    return AuditFilter(project=project, repository=repository, actor=actor, action=action, since=since)


def _target(row: dict[str, Any]) -> str:
    where = row["repository"] or row["project"] or ""
    if row["reference"]:
        where = f"{where}:{row['reference']}" if where else row["reference"]
    if row["digest"]:
        where = f"{where}@{row['digest'][:19]}"
    return str(where)


def _line(row: dict[str, Any]) -> list[Any]:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["ts"]))
    return [when, row["actor"] or "(anonymous)", row["action"], _target(row), row["result"], row["source_ip"]]


@command(app, "list")
def audit_list(
    svc: Services,
    project: str | None = None,
    repository: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since_hours: float | None = None,
    limit: int = 50,
) -> None:
    """Show the newest audit events."""
    rows, _ = svc.audit.query(_filter(project, repository, actor, action, since_hours), limit)
    table(["time (UTC)", "actor", "action", "target", "result", "from"], [_line(r) for r in rows])


@app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    project: str | None = None,
    repository: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since_hours: float | None = None,
) -> None:
    """Write matching events to standard output, oldest first."""
    if fmt not in ("jsonl", "csv"):
        raise usage_error("--format must be jsonl or csv")  # before the database is opened
    with services() as svc:
        for chunk in svc.audit.export(_filter(project, repository, actor, action, since_hours), fmt):
            sys.stdout.write(chunk)


@command(app, "prune")
def audit_prune(
    svc: Services,
    older_than_days: Annotated[float | None, typer.Option(help="Default: the retention setting.")] = None,
) -> str:
    """Delete audit events older than the retention period."""
    days = older_than_days if older_than_days is not None else svc.settings.audit_retention_days
    if not days:
        return "retention is 0 (keep for ever): nothing pruned"
    gone = svc.audit.prune(days * 86400)
    return json.dumps({"pruned": gone, "older_than_days": days})
