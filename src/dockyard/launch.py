"""The server process that `dockyard serve` execs into once the database is prepared.

It reads the already validated settings from the DOCKYARD_* variables `serve` set, imports only the
ASGI server, and lets each worker import the application itself (dockyard.api.app:create_app).
The supervisor replaces a worker that dies (crash, OOM kill) instead of shutting the server down.
With TLS files (DOCKYARD_TLS_*), SIGHUP or a change of those files replaces the workers one at a time,
each old one finishing its open requests, so a renewed certificate is served without dropping a
connection (see dockyard.tls).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

# What only command-line programs use, kept out of the server's processes (the supervisor and the
# workers it forks or spawns, which run this module first): with click, rich and pygments installed
# (Dockyard's CLI needs them) httpx imports its own CLI and structlog its rich tracebacks, about 9 MiB
# per process that the server never calls. A None entry makes such an import fail, which both handle
# (structlog falls back to plain tracebacks; the log renders exceptions as dicts anyway).
# tests/unit/test_lazy_imports.py checks a worker's modules.
for _unused in ("httpx._main", "rich"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

from dockyard.logs import configure, get_logger, logging_config  # noqa: E402 - after the entries above
from dockyard.tls import FileWatcher, TlsFiles, TlsFilesError  # noqa: E402

TARGET = "dockyard.api.app:create_app"


def tls_files() -> TlsFiles | None:
    cert, key = os.environ.get("DOCKYARD_TLS_CERT_FILE"), os.environ.get("DOCKYARD_TLS_KEY_FILE")
    if not (cert and key):
        return None
    ca = os.environ.get("DOCKYARD_TLS_CLIENT_CA_FILE")
    return TlsFiles(Path(cert), Path(key), Path(ca) if ca else None)


def reload_guard(files: TlsFiles | None) -> bool:
    """Whether a reload may go ahead: new workers that cannot load the TLS files would not serve at all."""
    if files is None:
        return True
    try:
        files.check()
    except TlsFilesError as exc:
        get_logger("dockyard.tls").error("reload refused: the running workers keep the old files", error=str(exc))
        return False
    get_logger("dockyard.tls").info("reloading TLS files: replacing the workers one at a time")
    return True


def watch(files: TlsFiles | None) -> None:
    """Poll the TLS files; a change that loads becomes a SIGHUP to this (the supervisor) process."""
    interval = float(os.environ.get("DOCKYARD_TLS_RELOAD_INTERVAL_SECONDS", "5"))
    if files is None or interval <= 0:
        return
    log = get_logger("dockyard.tls")
    FileWatcher(
        files,
        interval,
        on_change=lambda: os.kill(os.getpid(), signal.SIGHUP),
        on_error=lambda error: log.error("changed TLS files do not load; not reloading", error=error),
    ).start()


def main() -> None:
    host = os.environ["DOCKYARD_HOST"]
    port = int(os.environ["DOCKYARD_PORT"])
    workers = int(os.environ["DOCKYARD_WORKERS"])
    log_level = os.environ.get("DOCKYARD_LOG_LEVEL", "info")
    header_timeout = float(os.environ.get("DOCKYARD_HTTP_HEADER_READ_TIMEOUT_SECONDS", "30"))
    configure(log_level)
    files = tls_files()
    if os.environ.get("DOCKYARD_SERVER", "granian") == "granian":
        from granian.constants import Interfaces, SSLProtocols
        from granian.http import HTTP1Settings
        from granian.server import Server

        class GuardedServer(Server):  # type: ignore[misc,valid-type]
            def signal_handler_reload(self, *args: object, **kwargs: object) -> None:
                if reload_guard(files):
                    super().signal_handler_reload(*args, **kwargs)

        ssl: dict[str, object] = {}
        if files is not None:
            ssl = {"ssl_cert": files.cert, "ssl_key": files.key, "ssl_protocol_min": SSLProtocols.tls12}
            if files.client_ca:
                ssl |= {"ssl_ca": files.client_ca, "ssl_client_verify": True}
        server = GuardedServer(
            TARGET,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            factory=True,
            workers=workers,
            log_enabled=True,
            log_level=log_level,
            log_dictconfig=logging_config(log_level),  # applied by the supervisor and by every worker
            respawn_failed_workers=True,
            # On reload granian retires the old worker this long after starting the new one (it has no
            # readiness signal); the old one finishes its open requests, but a new connection is refused
            # if the new worker is not listening yet, so leave room for a slow start.
            respawn_interval=10,
            http1_settings=HTTP1Settings(header_read_timeout=max(1, int(header_timeout * 1000))),
            **ssl,
        )
        watch(files)
        server.serve()
    else:
        import ssl as stdlib_ssl

        import uvicorn
        from uvicorn.supervisors import Multiprocess

        class GuardedMultiprocess(Multiprocess):
            def handle_hup(self) -> None:
                if reload_guard(files):
                    super().handle_hup()

        tls: dict[str, object] = {}
        if files is not None:
            tls = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
            if files.client_ca:
                tls |= {"ssl_ca_certs": str(files.client_ca), "ssl_cert_reqs": stdlib_ssl.CERT_REQUIRED}
        # uvicorn has no header read timeout; the body read timeout is the application's middleware.
        config = uvicorn.Config(
            TARGET,
            host=host,
            port=port,
            factory=True,
            workers=workers,
            log_level=log_level,
            log_config=logging_config(log_level),
            access_log=False,
            timeout_worker_healthcheck=120,  # SIGHUP: how long a new worker may take before the restart is abandoned
            **tls,  # type: ignore[arg-type]
        )
        # Always supervised, even with one worker, so a dead worker is restarted (uvicorn.run would
        # serve a single worker in this process); its SIGHUP replaces each worker once the new one is up.
        supervisor = GuardedMultiprocess(config, sockets=[config.bind_socket()])
        watch(files)
        supervisor.run()


if __name__ == "__main__":
    main()
