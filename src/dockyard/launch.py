"""The server process that `dockyard serve` execs into once the database is prepared.

It reads the already validated settings from the DOCKYARD_* variables `serve` set, imports only the
ASGI server, and lets each worker import the application itself (dockyard.api.app:create_app).
The supervisor replaces a worker that dies (crash, OOM kill) instead of shutting the server down.
"""

from __future__ import annotations

import os
import sys

# What only command-line programs use, kept out of the server's processes (the supervisor and the
# workers it forks or spawns, which run this module first): with click, rich and pygments installed
# (Dockyard's CLI needs them) httpx imports its own CLI and structlog its rich tracebacks, about 9 MiB
# per process that the server never calls. A None entry makes such an import fail, which both handle
# (structlog falls back to plain tracebacks; the log renders exceptions as dicts anyway).
# tests/unit/test_lazy_imports.py checks a worker's modules.
for _unused in ("httpx._main", "rich"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

from dockyard.logs import configure, logging_config  # noqa: E402 - after the entries above

TARGET = "dockyard.api.app:create_app"


def main() -> None:
    host = os.environ["DOCKYARD_HOST"]
    port = int(os.environ["DOCKYARD_PORT"])
    workers = int(os.environ["DOCKYARD_WORKERS"])
    log_level = os.environ.get("DOCKYARD_LOG_LEVEL", "info")
    header_timeout = float(os.environ.get("DOCKYARD_HTTP_HEADER_READ_TIMEOUT_SECONDS", "30"))
    configure(log_level)
    if os.environ.get("DOCKYARD_SERVER", "granian") == "granian":
        from granian.constants import Interfaces
        from granian.http import HTTP1Settings
        from granian.server import Server

        Server(
            TARGET,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            factory=True,
            workers=workers,
            log_enabled=True,
            log_level=log_level,  # type: ignore[arg-type]
            log_dictconfig=logging_config(log_level),  # applied by the supervisor and by every worker
            respawn_failed_workers=True,
            http1_settings=HTTP1Settings(header_read_timeout=max(1, int(header_timeout * 1000))),
        ).serve()
    else:
        import uvicorn
        from uvicorn.supervisors import Multiprocess

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
        )
        # Always supervised, even with one worker, so a dead worker is restarted (uvicorn.run would
        # serve a single worker in this process).
        Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
