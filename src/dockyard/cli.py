"""The `dockyard` command."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from dockyard.config import CONFIG_FILE_ENV, ConfigError, Settings, load_settings

app = typer.Typer(
    help="Dockyard: a private container image registry.", no_args_is_help=True, pretty_exceptions_enable=False
)


@app.callback()
def _root() -> None:
    """Dockyard: a private container image registry."""


def _settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 5000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder [default: ./dockyard-data]")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML settings file")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [default: 1]")] = None,
) -> None:
    """Run the registry."""
    if config is not None:
        os.environ[CONFIG_FILE_ENV] = str(config.resolve())
    settings = _settings_or_exit(host=host, port=port, data_dir=data_dir, workers=workers)
    # Workers are separate processes that build their settings from the environment: hand the
    # resolved command-line values down that way.
    os.environ["DOCKYARD_HOST"] = settings.host
    os.environ["DOCKYARD_PORT"] = str(settings.port)
    os.environ["DOCKYARD_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["DOCKYARD_WORKERS"] = str(settings.workers)

    from dockyard.logs import configure, get_logger
    from dockyard.wiring import build_services, prepare

    configure(settings.log_level)
    log = get_logger("dockyard.serve")
    services = build_services(settings)
    try:
        generated = prepare(services)
    except Exception as exc:
        log.error("startup failed", database=settings.resolved_database_url, error=str(exc))
        raise typer.Exit(1) from None
    finally:
        services.close()
    if generated:
        typer.echo(
            f"Created user 'admin' with generated password: {generated}\n"
            "(shown once; set DOCKYARD_ADMIN_PASSWORD to choose it)",
            err=True,
        )

    metrics_dir = settings.data_dir.resolve() / ".metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log.info(
        "starting",
        url=f"http://{settings.host}:{settings.port}",
        database=settings.resolved_database_url,
        storage=str(settings.resolved_storage_path),
        workers=settings.workers,
        server=settings.server,
    )
    _run_server(settings)


def _run_server(settings: Settings) -> None:
    """Replace this process with the lean server launcher (same PID, so signals and supervisors
    work as expected): the long-lived supervisor then holds none of the CLI's or migration's imports."""
    os.environ["DOCKYARD_SERVER"] = settings.server
    os.environ["DOCKYARD_LOG_LEVEL"] = settings.log_level
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "dockyard.launch"])


def _register_subcommands() -> None:
    from dockyard import cli_manage, cli_scan

    cli_manage.register(app)
    cli_scan.register(app)


_register_subcommands()


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        sys.exit(2)
