"""`dockyard scan` (a local image, no server) and `dockyard vulndb` (the vulnerability database)."""

from __future__ import annotations

import json
import sys
import tarfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dockyard.config import ConfigError, load_settings

vulndb_app = typer.Typer(help="Update and inspect the vulnerability database.", no_args_is_help=True)


class Format(StrEnum):
    table = "table"
    json = "json"
    cyclonedx = "cyclonedx"
    spdx = "spdx"


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    unknown = "unknown"


def _vulndb_folder(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    try:
        return load_settings().resolved_vulndb_path
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None


def _stale_after() -> float:
    from dockyard.scan.model import DEFAULT_STALE_AFTER

    try:
        return load_settings().vulndb_stale_after_seconds
    except ConfigError:  # a scan needs no server settings
        return DEFAULT_STALE_AFTER


def scan_command(
    path: Annotated[Path, typer.Argument(help="OCI image layout folder (or its tar) or a `docker save` archive")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format")] = Format.table,
    inventory_only: Annotated[bool, typer.Option("--inventory-only", help="List packages only; no matching")] = False,
    fail_on: Annotated[
        Severity | None, typer.Option("--fail-on", help="Exit with status 1 if a finding is at least this severe")
    ] = None,
    vulndb: Annotated[
        Path | None,
        typer.Option(
            "--vulndb",
            help="Database folder, a folder of <ecosystem>/all.zip files, or an OSV zip "
            "[default: the server's <data_dir>/vulndb]",
        ),
    ] = None,
    platform: Annotated[str | None, typer.Option(help="os/arch[/variant] to scan in a multi-platform image")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to this file")] = None,
) -> None:
    """Scan a local image for packages, licences and known vulnerabilities."""
    from dockyard.scan.inventory import LayerInventory, inventory_image
    from dockyard.scan.layers import ImageError, open_source
    from dockyard.scan.matcher import Matcher, severity_at_least
    from dockyard.scan.model import DatabaseInfo, ScanResult
    from dockyard.scan.report import render_cyclonedx, render_json, render_spdx, render_table
    from dockyard.scan.vulndb import SourceError, VulnDB, open_for_cli

    try:
        images = open_source(path).images(platform)
    except (ImageError, OSError) as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None
    if not images:
        typer.echo(f"dockyard: {path}: no image" + (f" for platform {platform}" if platform else ""), err=True)
        raise typer.Exit(2)
    if len(images) > 1 and format in (Format.cyclonedx, Format.spdx):
        names = ", ".join(i.platform for i in images)
        typer.echo(f"dockyard: {path} holds several platforms ({names}): choose one with --platform", err=True)
        raise typer.Exit(2)

    db: VulnDB | None = None
    if not inventory_only:
        folder = _vulndb_folder(vulndb)
        try:
            db = open_for_cli(folder, Path.home() / ".cache" / "dockyard" / "vulndb")
        except SourceError as exc:
            typer.echo(f"dockyard: {exc}", err=True)
            typer.echo("run `dockyard vulndb update`, pass --vulndb, or use --inventory-only", err=True)
            raise typer.Exit(2) from None
        if db.count() == 0:
            typer.echo(f"dockyard: the vulnerability database in {folder} is empty", err=True)
            raise typer.Exit(2)
    matcher = Matcher(db) if db is not None else None
    database = None
    if db is not None:
        snap = db.snapshot()
        database = DatabaseInfo.of(snap.generation, snap.advisories, snap.updated_at, _stale_after())
        if database.state != "current":
            typer.echo(f"dockyard: warning: {database.describe()}", err=True)

    cache: dict[str, LayerInventory] = {}
    results: list[tuple[str, ScanResult]] = []
    try:
        for image in images:
            packages, distro = inventory_image(image, cache)
            findings = matcher.match(packages, distro) if matcher is not None else []
            results.append((image.platform, ScanResult(packages, findings, distro, database)))
    except (ImageError, OSError, EOFError, tarfile.TarError) as exc:
        typer.echo(f"dockyard: {path}: {exc}", err=True)
        raise typer.Exit(2) from None

    name = path.name
    if format == Format.table:
        text = "\n".join(
            (f"{plat}\n" if len(results) > 1 else "") + render_table(res, inventory_only=inventory_only)
            for plat, res in results
        )
    elif format == Format.json:
        docs = [{"platform": plat, **render_json(res, inventory_only=inventory_only)} for plat, res in results]
        text = json.dumps(docs[0] if len(docs) == 1 else docs, indent=2)
    elif format == Format.cyclonedx:
        text = render_cyclonedx(results[0][1], inventory_only=inventory_only, name=name)
    else:
        text = json.dumps(render_spdx(results[0][1], name=name, namespace_seed=str(path.resolve())), indent=2)
    if output is not None:
        output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    if fail_on is not None and any(
        severity_at_least(f.severity, fail_on.value) for _, res in results for f in res.findings
    ):
        raise typer.Exit(1)


@vulndb_app.command("update")
def vulndb_update(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="OSV zip URL or path, or a folder of <ecosystem>/all.zip files (repeatable) [default: settings]",
        ),
    ] = None,
    severity_source: Annotated[
        list[str] | None,
        typer.Option(
            "--severity-source",
            help="NVD CVE API 2.0 JSON file, URL or folder rating CVEs (repeatable) [default: settings]",
        ),
    ] = None,
    path: Annotated[Path | None, typer.Option("--path", help="Database folder [default: <data_dir>/vulndb]")] = None,
) -> None:
    """Download and import the configured OSV sources; a failed source keeps its last good copy."""
    from dockyard.scan.vulndb import SourceError, VulnDB

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None
    db = VulnDB(path or settings.resolved_vulndb_path)
    failed = 0
    severities = severity_source if severity_source is not None else settings.vulndb_severity_sources
    for result in [*db.update(source or settings.vulndb_sources), *db.update_severities(severities)]:
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


@vulndb_app.command("status")
def vulndb_status(
    path: Annotated[Path | None, typer.Option("--path", help="Database folder [default: <data_dir>/vulndb]")] = None,
) -> None:
    """Show each source's last check, last change and counts."""
    from rich.console import Console
    from rich.table import Table

    from dockyard.scan.vulndb import VulnDB

    db = VulnDB(_vulndb_folder(path))
    table = Table("source", "checked", "updated", "advisories", "+", "~", "-", "error")
    for s in db.sources():
        table.add_row(
            s.url, s.checked_at or "", s.updated_at or "", str(s.records), str(s.added), str(s.changed),
            str(s.removed), s.error or "",
        )  # fmt: skip
    Console().print(table)
    typer.echo(f"{db.count()} advisories (generation {db.generation})")


def scanner_adapter_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    vulndb: Annotated[
        Path | None, typer.Option("--vulndb", help="Database folder [default: the server's <data_dir>/vulndb]")
    ] = None,
    authorization: Annotated[
        str | None,
        typer.Option(
            envvar="DOCKYARD_ADAPTER_AUTHORIZATION",
            help="Authorization header value clients must send (Harbor's 'access credential'); required "
            "unless --insecure-no-auth. Prefer the environment variable: a command line is visible to all users",
        ),
    ] = None,
    allow_registry: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-registry",
            envvar="DOCKYARD_ADAPTER_ALLOW_REGISTRIES",
            help="A registry the adapter may pull from (repeatable; the variable takes them space-separated): "
            "a host (any port), host:port, or a URL such as https://harbor.example.com. Required",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Serve without an authorization check (a test setup only)")
    ] = False,
    workers: Annotated[int, typer.Option(help="Images scanned at once")] = 2,
    max_jobs: Annotated[int, typer.Option(min=1, help="Scan jobs kept at once (running and finished)")] = 1000,
    job_ttl: Annotated[float, typer.Option(min=1, help="Seconds a finished job's report stays available")] = 3600.0,
    layer_cache: Annotated[int, typer.Option(min=0, help="Layer inventories kept in memory (by digest)")] = 256,
) -> None:
    """Serve this scanner over the Harbor Scanner Adapter API v1.1 (for Harbor, or another Dockyard)."""
    import uvicorn

    from dockyard.api.scanner_adapter import AdapterConfigError, JobTable, LayerCache, create_adapter_app
    from dockyard.scan.vulndb import VulnDB
    from dockyard.wiring import http_client

    if not authorization and not insecure_no_auth:
        typer.echo(
            "dockyard: the scanner adapter needs --authorization (or DOCKYARD_ADAPTER_AUTHORIZATION): it pulls "
            "from registries for whoever calls it. Use --insecure-no-auth to run without a check.",
            err=True,
        )
        raise typer.Exit(2)
    if not allow_registry:
        typer.echo(
            "dockyard: the scanner adapter needs the registries it may pull from: --allow-registry HOST or URL "
            "(repeatable, or DOCKYARD_ADAPTER_ALLOW_REGISTRIES)",
            err=True,
        )
        raise typer.Exit(2)
    folder = _vulndb_folder(vulndb)
    db = VulnDB(folder)
    if db.count() == 0:
        typer.echo(f"dockyard: the vulnerability database in {folder} is empty: run `dockyard vulndb update`", err=True)
        raise typer.Exit(2)
    try:
        app = create_adapter_app(
            db,
            authorization or None,
            workers,
            allowed_registries=allow_registry or [],
            allow_anonymous=insecure_no_auth,
            jobs=JobTable(max_jobs, job_ttl),
            layer_cache=LayerCache(layer_cache),
            http=http_client(max_connections=max(10, workers * 2)),
        )
    except AdapterConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None
    from dockyard.logs import logging_config

    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=logging_config("warning"))


def register(app: typer.Typer) -> None:
    app.command("scanner-adapter")(scanner_adapter_command)
    app.command("scan")(scan_command)
    app.add_typer(vulndb_app, name="vulndb")
