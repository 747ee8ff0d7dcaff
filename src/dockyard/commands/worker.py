"""`dockyard worker`: the background duties without the HTTP server, so serving replicas and
background work can be scaled apart (serving replicas then set `background_duties = false`)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from dockyard.commands.common import settings_or_exit
from dockyard.logs import configure, get_logger
from dockyard.wiring import build_services, maintenance, prepare_database


def worker_command() -> None:
    """Run the background duties (collector, retention, scrub, scans, vulnerability database) until
    stopped (SIGTERM or Ctrl-C). Each duty runs in one process at a time across every replica and
    worker, under its database lease; scans are shared out item by item."""
    settings = settings_or_exit()
    configure(settings.log_level)
    log = get_logger("dockyard.worker")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    services = build_services(settings)
    try:
        try:
            prepare_database(services)  # a worker may start first: it migrates as a server would
        except Exception as exc:  # said in one line, as `serve` does: usually the database is away
            log.error("startup failed", database=settings.database_url_for_logs, error=f"{type(exc).__name__}: {exc}")
            raise typer.Exit(1) from None
        services.audit.start()
        duties = maintenance(services)
        log.info(
            "worker started",
            database=settings.database_url_for_logs,
            duties=[d.name for d in duties.duties],
        )
        duties.start()
        stop.wait()
        log.info("worker stopping")
        duties.stop()
    finally:
        services.close()
