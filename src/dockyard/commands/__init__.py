"""The `dockyard` subcommands, one module per command group; `dockyard.cli` holds the root app and
`serve`. Management commands run directly against the configured database (no server needed), as
actor `cli:<os user>` (see `common.services`)."""

from __future__ import annotations

import typer

from dockyard.commands import (
    audit,
    gc,
    immutability,
    keys,
    projects,
    retention,
    robots,
    scan,
    scanner_adapter,
    signing,
    storage,
    tokens,
    users,
    vulndb,
    worker,
)
from dockyard.commands.common import with_services


def register(app: typer.Typer) -> None:
    """Add every command group to the root app (in the order `dockyard --help` lists them)."""
    projects.app.add_typer(immutability.app, name="immutable")
    app.command("gc")(with_services(gc.gc_command))
    app.add_typer(storage.app, name="storage")
    app.add_typer(retention.app, name="retention")
    app.add_typer(users.app, name="user")
    app.add_typer(projects.app, name="project")
    app.add_typer(robots.app, name="robot")
    app.add_typer(tokens.app, name="token")
    app.add_typer(audit.app, name="audit")
    app.command("scanner-adapter")(scanner_adapter.scanner_adapter_command)
    app.command("scan")(scan.scan_command)
    app.add_typer(vulndb.app, name="vulndb")
    app.command("worker")(worker.worker_command)
    app.add_typer(keys.app, name="keys")
    app.command("sign")(signing.sign_command)
    app.command("verify")(signing.verify_command)
