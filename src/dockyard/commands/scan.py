"""`dockyard scan`: scan a local image (no server needed)."""

from __future__ import annotations

import json
import sys
import tarfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dockyard.commands.common import usage_error
from dockyard.commands.vulndb import vulndb_folder, vulndb_option
from dockyard.config import ConfigError, load_settings


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
        Path | None, vulndb_option("Database folder, a folder of <ecosystem>/all.zip files, or an OSV zip")
    ] = None,
    platform: Annotated[str | None, typer.Option(help="os/arch or os/arch/variant of a multi-arch image")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to this file")] = None,
) -> None:
    """Scan a local image for packages, licences and known vulnerabilities."""
    from dockyard.scan.inventory import LayerInventory, inventory_image
    from dockyard.scan.layers import ImageError, open_source
    from dockyard.scan.matcher import Matcher
    from dockyard.scan.model import DatabaseInfo, ScanResult, at_least
    from dockyard.scan.report import render_cyclonedx, render_json, render_spdx, render_table
    from dockyard.scan.vulndb import SourceError, VulnDB, open_for_cli

    try:
        images = open_source(path).images(platform)
    except (ImageError, OSError) as exc:
        raise usage_error(str(exc)) from None
    if not images:
        raise usage_error(f"{path}: no image" + (f" for platform {platform}" if platform else ""))
    if len(images) > 1 and format in (Format.cyclonedx, Format.spdx):
        names = ", ".join(i.platform for i in images)
        raise usage_error(f"{path} holds several platforms ({names}): choose one with --platform")

    db: VulnDB | None = None
    if not inventory_only:
        folder = vulndb_folder(vulndb)
        try:
            db = open_for_cli(folder, Path.home() / ".cache" / "dockyard" / "vulndb")
        except SourceError as exc:
            typer.echo(f"dockyard: {exc}", err=True)
            typer.echo("run `dockyard vulndb update`, pass --vulndb, or use --inventory-only", err=True)
            raise typer.Exit(2) from None
        if db.count() == 0:
            raise usage_error(f"the vulnerability database in {folder} is empty")
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
        raise usage_error(f"{path}: {exc}") from None

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
    if fail_on is not None and any(at_least(f.severity, fail_on.value) for _, res in results for f in res.findings):
        raise typer.Exit(1)
