"""End-to-end fixtures: the real `dockyard serve` process, driven by real clients.

The server runs twice per session: on its embedded defaults (SQLite, one worker) and on PostgreSQL
with two worker processes, so every client test also proves the multi-process, shared-database setup.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import create_pg_database, drop_pg_database, missing
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e
DOCKYARD = Path(sys.executable).with_name("dockyard")
# Seconds any wait here allows before it fails: for a server to start, a worker to be replaced, a
# scan or a collection to finish, a log event to appear. Only a failure waits that long (every wait
# ends as soon as what it waits for is there); a busy 2-core CI machine needed more than 90 s.
PATIENCE = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    host: str  # host:port, as clients name the registry
    username: str
    password: str
    log: Path
    pid: int = 0  # of the `dockyard serve` process (the server's supervisor once it has exec'd)
    verify: ssl.SSLContext | None = None  # set for a server that serves HTTPS: trusts its CA

    @property
    def url(self) -> str:
        return f"{'https' if self.verify else 'http'}://{self.host}"

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    def token(self, scope: str) -> str:
        r = httpx.get(
            f"{self.url}/token",
            params={"service": "dockyard", "scope": scope},
            auth=(self.username, self.password),
            verify=self.verify or True,
            timeout=TIMEOUT,
        )
        r.raise_for_status()
        return str(r.json()["token"])


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (scripts/system-deps.sh installs it)")
    assert path is not None
    return path


@contextlib.contextmanager
def process(
    args: list[str],
    env: dict[str, str],
    log: Path,
    ready_url: str,
    headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` (its output into `log`) until it answers 200 at `ready_url` (within three minutes: a
    busy 2-core CI machine can take one: PATIENCE); stopped on leaving, killed when it does not stop within 20 s."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                if httpx.get(ready_url, headers=headers, timeout=2, verify=verify or True).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{' '.join(args[1:2])} did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(
    data: Path,
    engine: str,
    extra_env: dict[str, str] | None = None,
    workers: int | None = None,
    pg_password: str | None = None,
    verify: ssl.SSLContext | None = None,
) -> Iterator[Server]:
    """`dockyard serve` on a free port: SQLite with one worker, or PostgreSQL with two (unless `workers`
    says otherwise). `pg_password` goes into the database URL (the test server ignores it: trust auth).
    `verify`: the server serves HTTPS (DOCKYARD_TLS_* in `extra_env`) and this context trusts it."""
    password = secrets.token_urlsafe(12)
    port = free_port()
    # No vulnerability sources unless a test names some: an empty database is updated at first start,
    # and tests must not reach for osv.dev (there is no internet here, nor should a test need it).
    env = {**os.environ, "DOCKYARD_VULNDB_SOURCES": "[]", "DOCKYARD_ADMIN_PASSWORD": password, **(extra_env or {})}
    env.pop("DOCKYARD_DATABASE_URL", None)
    args = [str(DOCKYARD), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
    admin_engine = None
    if engine == "postgres":
        env["DOCKYARD_DATABASE_URL"], admin_engine = create_pg_database("dockyard_e2e")
        if pg_password:
            url = sa.engine.make_url(env["DOCKYARD_DATABASE_URL"]).set(password=pg_password)
            env["DOCKYARD_DATABASE_URL"] = url.render_as_string(hide_password=False)
        workers = workers or 2
    if workers:
        args += ["--workers", str(workers)]
    log = data / "server.log"
    data.mkdir(parents=True, exist_ok=True)
    try:
        scheme = "https" if verify else "http"
        with process(args, env, log, f"{scheme}://127.0.0.1:{port}/readyz", verify=verify) as proc:
            yield Server(f"127.0.0.1:{port}", "admin", password, log, proc.pid, verify)
    finally:
        if admin_engine is not None:
            drop_pg_database(env["DOCKYARD_DATABASE_URL"], admin_engine)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp(f"server-{request.param}"), request.param) as srv:
        yield srv


def run(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
