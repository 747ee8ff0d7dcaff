"""The `dockyard` command."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from dockyard.commands import register
from dockyard.commands.common import settings_or_exit
from dockyard.config import CONFIG_FILE_ENV, ConfigError, Settings
from dockyard.tls import TlsFiles, TlsFilesError

app = typer.Typer(
    help="Dockyard: a private container image registry.", no_args_is_help=True, pretty_exceptions_enable=False
)


@app.callback()
def _root() -> None:
    """Dockyard: a private container image registry."""


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
    settings = settings_or_exit(host=host, port=port, data_dir=data_dir, workers=workers)
    # Workers are separate processes that build their settings from the environment: hand the
    # resolved command-line values down that way.
    os.environ["DOCKYARD_HOST"] = settings.host
    os.environ["DOCKYARD_PORT"] = str(settings.port)
    os.environ["DOCKYARD_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["DOCKYARD_WORKERS"] = str(settings.workers)

    from dockyard.logs import configure, get_logger

    configure(settings.log_level)
    log = get_logger("dockyard.serve")
    problem = _address_in_use(settings.host, settings.port)
    if problem:
        log.error("cannot listen", address=f"{settings.host}:{settings.port}", error=problem)
        raise typer.Exit(1)
    tls = tls_files(settings)
    if tls is not None:
        try:
            tls.check()
        except TlsFilesError as exc:
            log.error("cannot serve HTTPS", error=str(exc))
            raise typer.Exit(1) from None
    first_start(settings)

    metrics_dir = settings.data_dir.resolve() / ".metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log.info(
        "starting",
        url=f"{'https' if tls else 'http'}://{settings.host}:{settings.port}",
        client_certificates="required" if tls and tls.client_ca else None,
        database=settings.database_url_for_logs,
        storage=settings.storage_url or str(settings.resolved_storage_path),
        workers=settings.workers,
        server=settings.server,
    )
    _run_server(settings)


def first_start(settings: Settings) -> None:
    """Migrate, make the signing key and, when there is no user at all, the `admin` user: the one place
    that creates it. A generated password goes to a file only its owner can read, in the data folder;
    the log says where (a log is shipped and kept: it never holds a secret)."""
    from dockyard.logs import get_logger
    from dockyard.wiring import build_services, prepare

    log = get_logger("dockyard.serve")
    services = build_services(settings)
    try:
        generated = prepare(services)
    except Exception as exc:
        log.error("startup failed", database=settings.database_url_for_logs, error=f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    finally:
        services.close()
    if generated:
        # The one time this password exists in clear: the operator has to read it to sign in.
        path = write_initial_password(settings.data_dir, generated)
        log.warning(
            "created user 'admin' with a generated password, written to the file named here (readable by "
            "this user only; delete it once read, or change the password). Set DOCKYARD_ADMIN_PASSWORD to "
            "choose it, or create an administrator with `dockyard user create NAME --admin` before serving",
            username="admin",
            password_file=str(path),
        )


INITIAL_PASSWORD_FILE = "initial-admin-password"


def write_initial_password(data_dir: Path, password: str) -> Path:
    """`password` in `data_dir`/initial-admin-password, mode 0600 from its creation (never readable by
    others, even for an instant)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = (data_dir / INITIAL_PASSWORD_FILE).resolve()
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return path


def tls_files(settings: Settings) -> TlsFiles | None:
    """The TLS files as absolute paths (the launcher and its workers may not share this working folder's
    idea of relative ones), or None for plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    ca = settings.tls_client_ca_file
    return TlsFiles(settings.tls_cert_file.resolve(), settings.tls_key_file.resolve(), ca.resolve() if ca else None)


def _address_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, or None. The servers bind with SO_REUSEPORT (granian: one
    socket per worker), which would let a second `serve` share the port -- and the traffic -- with the
    first in silence. A probe bind without it fails while anyone listens there (SO_REUSEADDR only
    tolerates connections in TIME_WAIT left by a previous run)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"port {port} on {host} is already in use (is another server running?)"
                return str(exc)
    return None


def _run_server(settings: Settings) -> None:
    """Replace this process with the lean server launcher (same PID, so signals and supervisors
    work as expected): the long-lived supervisor then holds none of the CLI's or migration's imports."""
    os.environ["DOCKYARD_SERVER"] = settings.server
    os.environ["DOCKYARD_LOG_LEVEL"] = settings.log_level
    os.environ["DOCKYARD_HTTP_HEADER_READ_TIMEOUT_SECONDS"] = str(settings.http_header_read_timeout_seconds)
    tls = tls_files(settings)
    for name, path in (
        ("DOCKYARD_TLS_CERT_FILE", tls and tls.cert),
        ("DOCKYARD_TLS_KEY_FILE", tls and tls.key),
        ("DOCKYARD_TLS_CLIENT_CA_FILE", tls and tls.client_ca),
    ):
        if path:
            os.environ[name] = str(path)
        else:
            os.environ.pop(name, None)
    os.environ["DOCKYARD_TLS_RELOAD_INTERVAL_SECONDS"] = str(settings.tls_reload_interval_seconds)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "dockyard.launch"])


register(app)  # every other command, one module per group in dockyard/commands/


def main() -> None:
    from dockyard.logs import configure

    configure()  # every command logs as the server does (level from DOCKYARD_LOG_LEVEL until settings load)
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        sys.exit(2)
