"""The server process that `dockyard serve` execs into once the database is prepared.

It reads the already validated settings from the DOCKYARD_* variables `serve` set, imports only the
ASGI server, and lets each worker import the application itself (dockyard.api.app:create_app).
"""

from __future__ import annotations

import os

TARGET = "dockyard.api.app:create_app"


def main() -> None:
    host = os.environ["DOCKYARD_HOST"]
    port = int(os.environ["DOCKYARD_PORT"])
    workers = int(os.environ["DOCKYARD_WORKERS"])
    log_level = os.environ.get("DOCKYARD_LOG_LEVEL", "info")
    if os.environ.get("DOCKYARD_SERVER", "granian") == "granian":
        from granian.constants import Interfaces
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
        ).serve()
    else:
        import uvicorn

        uvicorn.run(TARGET, host=host, port=port, factory=True, workers=workers, log_level=log_level, access_log=False)


if __name__ == "__main__":
    main()
