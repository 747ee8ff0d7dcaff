"""`dockyard storage`: verify and tidy blob storage."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dockyard.commands.common import command
from dockyard.wiring import Services

app = typer.Typer(help="Verify and tidy blob storage.", no_args_is_help=True)


@command(app, "reconcile")
def storage_reconcile(
    svc: Services,
    dry_run: Annotated[bool, typer.Option(help="List orphaned files, remove nothing.")] = False,
    min_age_hours: Annotated[float, typer.Option(help="Leave unknown files younger than this.")] = 1.0,
) -> str:
    """Remove files in storage that the database does not know (walks the whole storage)."""
    from dockyard.services.lifecycle.reconcile import Reconciler

    report = Reconciler(svc.blobs, min_age_hours * 3600).run(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    summary = (
        f"checked {report.checked} files: {verb} {len(report.orphans)} orphans ({report.bytes} bytes); "
        f"{report.young} unknown files too recent to judge"
    )
    return "\n".join([summary, *(f"  {digest}" for digest in report.orphans)])


@command(app, "scrub")
def storage_scrub(
    svc: Services, rate_mb: Annotated[float, typer.Option(help="Read at most this many MB/s.")] = 50.0
) -> None:
    """Re-read every blob and verify its digest; exit status 1 when any is missing or altered."""
    report = svc.scrubber.run(rate_mb * 1_000_000)
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.missing or report.corrupt:
        raise typer.Exit(1)
