"""`dockyard scanner-adapter`: this scanner served over the Harbor Scanner Adapter API v1.1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dockyard.commands.common import usage_error
from dockyard.commands.vulndb import vulndb_folder, vulndb_option


def scanner_adapter_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    vulndb: Annotated[Path | None, vulndb_option("Database folder")] = None,
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
        raise usage_error(
            "the scanner adapter needs --authorization (or DOCKYARD_ADAPTER_AUTHORIZATION): it pulls "
            "from registries for whoever calls it. Use --insecure-no-auth to run without a check."
        )
    if not allow_registry:
        raise usage_error(
            "the scanner adapter needs the registries it may pull from: --allow-registry HOST or URL "
            "(repeatable, or DOCKYARD_ADAPTER_ALLOW_REGISTRIES)"
        )
    folder = vulndb_folder(vulndb)
    db = VulnDB(folder)
    if db.count() == 0:
        raise usage_error(f"the vulnerability database in {folder} is empty: run `dockyard vulndb update`")
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
        raise usage_error(str(exc)) from None
    from dockyard.logs import logging_config

    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=logging_config("warning"))
