"""`dockyard vulndb`: update and inspect the vulnerability database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.commands.common import settings_or_exit

app = typer.Typer(help="Update and inspect the vulnerability database.", no_args_is_help=True)

DatabasePath = Annotated[Path | None, typer.Option("--path", help="Database folder [default: <data_dir>/vulndb]")]


def vulndb_folder(explicit: Path | None) -> Path:
    """The database folder given, else the server's (exit status 2 on a configuration problem)."""
    return explicit if explicit is not None else settings_or_exit().resolved_vulndb_path


def vulndb_option(what: str) -> Any:
    """`--vulndb`: the database a command reads, by default the server's."""
    return typer.Option("--vulndb", help=f"{what} [default: the server's <data_dir>/vulndb]")


def _sources(flag: str, what: str) -> Any:
    return typer.Option(flag, help=f"{what} (repeatable) [default: settings]")


@app.command("update")
def vulndb_update(
    source: Annotated[
        list[str] | None, _sources("--source", "OSV zip URL or path, or a folder of <ecosystem>/all.zip files")
    ] = None,
    severity_source: Annotated[
        list[str] | None, _sources("--severity-source", "NVD CVE API 2.0 JSON file, URL or folder rating CVEs")
    ] = None,
    path: DatabasePath = None,
) -> None:
    """Download and import the configured OSV sources; a failed source keeps its last good copy."""
    from dockyard.scan.vulndb import SourceError, VulnDB
    from dockyard.wiring import http_client

    settings = settings_or_exit()
    failed = 0
    severities = severity_source if severity_source is not None else settings.vulndb_severity_sources
    # Downloads go through the process's outbound client (timeouts, user agent), as the server's do.
    with http_client() as http:
        db = VulnDB(path or settings.resolved_vulndb_path, http)
        results = [*db.update(source or settings.vulndb_sources), *db.update_severities(severities)]
    for result in results:
        if isinstance(result, SourceError):
            failed += 1
            typer.echo(f"failed  {result}", err=True)
        elif result.not_modified:
            typer.echo(f"current {result.source}: {result.records} advisories")
        else:
            typer.echo(
                f"updated {result.source}: {result.records} advisories "
                f"(+{result.added} ~{result.changed} -{result.removed})"
            )
    typer.echo(f"{db.count()} advisories in {db.path} (generation {db.generation})")
    if failed:
        raise typer.Exit(1)


@app.command("status")
def vulndb_status(path: DatabasePath = None) -> None:
    """Show each source's last check, last change and counts."""
    from rich.console import Console
    from rich.table import Table

    from dockyard.scan.vulndb import VulnDB

    db = VulnDB(vulndb_folder(path))
    table = Table("source", "checked", "updated", "advisories", "+", "~", "-", "error")
    for s in db.sources():
        table.add_row(
            s.url, s.checked_at or "", s.updated_at or "", str(s.records), str(s.added), str(s.changed),
            str(s.removed), s.error or "",
        )  # fmt: skip
    Console().print(table)
    typer.echo(f"{db.count()} advisories (generation {db.generation})")
