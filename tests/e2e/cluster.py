"""Several `dockyard serve` replicas on one database and one blob storage, behind a real haproxy that
terminates TLS and runs docs/deploy/haproxy.cfg as it is (only its ${...} placeholders are filled)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DOCKYARD, PATIENCE, free_port, require_tool
from tests.support.tls import make_tls_files

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "haproxy.cfg"
REPLICAS = 3


def wait_until(what: str, check: object, deadline: float = PATIENCE, every: float = 0.2) -> object:
    """Poll `check()` until it returns something true. The deadline only bounds a failure, see PATIENCE."""
    assert callable(check)
    end = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(every)


@dataclass
class Replica:
    name: str  # as haproxy's backend names it
    port: int
    data: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log(self) -> Path:
        return self.data / f"server-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        args = [str(DOCKYARD), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data)]
        with open(self.log, "wb") as out:
            # A session of its own: the replica is a process group (`serve` execs into the server's
            # supervisor, which starts the workers), killed as one.
            self.proc = subprocess.Popen(
                args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited:\n{self.log.read_text()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(f"{self.name} to be ready", ready)

    def pids(self) -> set[int]:
        """Every live process of the replica (its process group)."""
        assert self.proc is not None
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                    found.add(int(entry.name))
        return found

    def kill(self) -> None:
        """kill -9 the whole replica: supervisor and workers at once, nothing gets to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        wait_until(f"{self.name}'s processes to be gone", lambda: not self.pids())

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        """After terminate(): wait for the replica to stop; kill it when it takes over 20 s."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def events(self) -> Iterator[dict[str, object]]:
        """The JSON log lines of every start of this replica."""
        for n in range(1, self.starts + 1):
            for line in (self.data / f"server-{n}.log").read_text().splitlines():
                if line.startswith("{"):
                    yield json.loads(line)


@dataclass
class Balancer:
    port: int
    admin_socket: Path
    log: Path
    ca_dir: Path  # a folder with ca.crt, for skopeo's --*-cert-dir
    ca_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def admin(self, command: str) -> str:
        """One command on haproxy's runtime API socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.admin_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers_up(self) -> set[str]:
        up = set()
        for row in self.admin("show stat").splitlines():
            cols = row.split(",")
            # pxname, svname, ..., status (the 18th column)
            if len(cols) > 17 and cols[0] == "replicas" and cols[1].startswith("replica") and cols[17] == "UP":
                up.add(cols[1])
        return up

    def busy_servers(self) -> set[str]:
        """The replicas that have a request of a client in progress now."""
        return set(re.findall(r"be=replicas srv=(replica\d+)", self.admin("show sess")))

    def served_by(self) -> list[tuple[str, str, str]]:
        """(replica, method, path) of every request logged so far."""
        pattern = re.compile(r" replicas/(replica\d+) .*\"(\w+) (\S+) HTTP")
        return [m.groups() for m in map(pattern.search, self.log.read_text().splitlines()) if m]  # type: ignore[misc]


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: Balancer
    username: str
    password: str
    database_url: str
    killed_at: dict[str, float] = field(default_factory=dict)  # replica → wall-clock time of its kill -9

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    def by_name(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def kill(self, replica: Replica) -> None:
        replica.kill()
        self.killed_at[replica.name] = time.time()

    def owner_of(self, pid: int) -> Replica | None:
        """The live replica that has the process `pid`."""
        return next((r for r in self.alive() if pid in r.pids()), None)


def timestamp(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


@contextmanager
def running_cluster(
    root: Path, database_url: str, storage_env: dict[str, str], extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """Three replicas sharing `database_url` and the storage `storage_env` names, behind haproxy on TLS."""
    haproxy = require_tool("haproxy")
    password = secrets.token_urlsafe(12)
    lb_port = free_port()
    ports = [free_port() for _ in range(REPLICAS)]
    (root / "tls").mkdir()
    ca, cert, key = make_tls_files(root / "tls", ["127.0.0.1"])
    pem = root / "tls" / "haproxy.pem"  # haproxy wants the chain and the key in one file
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    ca_dir = root / "ca"
    ca_dir.mkdir()
    (ca_dir / "ca.crt").write_bytes(ca.read_bytes())
    env = {
        **os.environ,
        "DOCKYARD_DATABASE_URL": database_url,
        "DOCKYARD_ADMIN_PASSWORD": password,
        "DOCKYARD_VULNDB_SOURCES": "[]",  # no internet here
        "DOCKYARD_WORKERS": "1",
        # What the clients see: the balancer, on https (the token realm names it).
        "DOCKYARD_PUBLIC_URL": f"https://127.0.0.1:{lb_port}",
        "DOCKYARD_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        **storage_env,
        **(extra_env or {}),
    }
    replicas = [Replica(f"replica{i + 1}", port, root / f"replica{i + 1}", env) for i, port in enumerate(ports)]
    balancer = Balancer(lb_port, root / "haproxy.sock", root / "haproxy.log", ca_dir, ca)
    lb_env = {
        **os.environ,
        "HAPROXY_BIND": f"127.0.0.1:{lb_port}",
        "HAPROXY_CERT": str(pem),
        "HAPROXY_ADMIN_SOCKET": str(balancer.admin_socket),
        **{f"DOCKYARD_REPLICA{i + 1}": r.host for i, r in enumerate(replicas)},
    }
    try:
        # All at once on an empty database: one migrates and creates the admin while the others
        # wait for the migration's lock (each one's first start is the same `dockyard serve`).
        for r in replicas:
            r.data.mkdir(parents=True)
            r.start()
        for r in replicas:
            r.wait_ready()
        with open(balancer.log, "wb") as out:
            balancer.proc = subprocess.Popen(
                [haproxy, "-db", "-f", str(HAPROXY_CFG)], env=lb_env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until("haproxy to see every replica up", lambda: _up(balancer) == {r.name for r in replicas})
        yield Cluster(replicas, balancer, "admin", password, database_url)
    finally:
        if balancer.proc is not None:
            balancer.proc.terminate()
            balancer.proc.wait(timeout=20)
        for r in replicas:
            r.terminate()
        for r in replicas:
            r.stop()


def _up(balancer: Balancer) -> set[str]:
    assert balancer.proc is not None
    if balancer.proc.poll() is not None:
        pytest.fail(f"haproxy exited:\n{balancer.log.read_text()}")
    try:
        return balancer.servers_up()
    except OSError:  # the socket is not there yet
        return set()
