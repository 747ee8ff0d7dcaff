"""The server process as an operator runs it: what its log holds, how it treats stalled and vanishing
clients, a worker killed under it, and a second server started on its port."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DOCKYARD, PATIENCE, Server, running_server
from tests.support.http import TIMEOUT

SECRET_ENV = {
    "DOCKYARD_LDAP_BIND_PASSWORD": "ldap-bind-S3CRET",
    "DOCKYARD_OIDC_CLIENT_SECRET": "oidc-client-S3CRET",
    "DOCKYARD_EXTERNAL_SCANNER_AUTHORIZATION": "Bearer scanner-S3CRET",
}
DB_PASSWORD = "database-S3CRET"
IDLE_LIMIT = 2  # seconds: the header and body read timeouts of the server under test


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker on PostgreSQL (a password in the database URL), every secret setting configured."""
    env = {
        **SECRET_ENV,
        "DOCKYARD_HTTP_HEADER_READ_TIMEOUT_SECONDS": str(IDLE_LIMIT),
        "DOCKYARD_HTTP_BODY_READ_TIMEOUT_SECONDS": str(IDLE_LIMIT),
    }
    data = tmp_path_factory.mktemp("hardened")
    with running_server(data, "postgres", env, workers=1, pg_password=DB_PASSWORD) as srv:
        yield srv


def log_events(srv: Server) -> list[dict[str, Any]]:
    """Every line of the server's log, each of which must be one JSON event."""
    return [json.loads(line) for line in srv.log.read_text().splitlines() if line.strip()]


def wait_for_event(srv: Server, match: Callable[[dict[str, Any]], bool], count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + PATIENCE
    while True:
        found = [e for e in log_events(srv) if match(e)]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"log event never came:\n{srv.log.read_text()}"
        time.sleep(0.1)


def basic_header(srv: Server) -> str:
    return "Basic " + base64.b64encode(srv.creds.encode()).decode()


def start_upload(srv: Server, repo: str) -> str:
    r = httpx.post(f"{srv.url}/v2/{repo}/blobs/uploads/", auth=(srv.username, srv.password), timeout=TIMEOUT)
    assert r.status_code == 202, r.text
    return r.headers["location"]


def raw_request(srv: Server, head: str, body: bytes = b"") -> socket.socket:
    host, port = srv.host.split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(120)  # far above IDLE_LIMIT: only a server that never cuts the connection trips it
    sock.sendall(head.encode() + body)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_the_log_holds_no_secret_and_an_error_is_one_event(hardened: Server) -> None:
    # An internal error, from a fault outside the process: the upload staging folder is not a folder.
    uploads = hardened.log.parent / "storage" / "uploads"
    for child in uploads.iterdir():
        child.unlink()
    uploads.rmdir()
    uploads.write_bytes(b"")
    try:
        r = httpx.post(
            f"{hardened.url}/v2/e2e/app/blobs/uploads/", auth=(hardened.username, hardened.password), timeout=TIMEOUT
        )
        assert r.status_code == 500
        assert r.json()["errors"][0]["message"] == "internal server error"
    finally:
        uploads.unlink()
        uploads.mkdir()
    [error] = wait_for_event(hardened, lambda e: e.get("event") == "unhandled error")

    # A client that goes away in the middle of a PATCH body.
    location = start_upload(hardened, "e2e/app")
    sock = raw_request(
        hardened,
        f"PATCH {location} HTTP/1.1\r\nHost: {hardened.host}\r\nAuthorization: {basic_header(hardened)}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n",
        b"x" * 1_000_000,
    )
    sock.close()
    [gone] = wait_for_event(hardened, lambda e: e.get("event") == "client went away")

    text = hardened.log.read_text()
    events = log_events(hardened)  # one format: every line parses as a JSON event
    for secret in [*SECRET_ENV.values(), DB_PASSWORD, hardened.password, basic_header(hardened).split()[1]]:
        assert secret not in text
    assert [e for e in events if e["level"] in ("error", "critical")] == [error]
    assert error["method"] == "POST" and error["path"] == "/v2/e2e/app/blobs/uploads/"
    [exc] = error["exception"]
    assert exc["exc_type"] == "NotADirectoryError" and "Not a directory" in exc["exc_value"]
    assert exc["frames"] and all(set(frame) == {"filename", "lineno", "name"} for frame in exc["frames"])
    assert gone["level"] == "info" and gone["path"] == location
    assert [e for e in events if e.get("path") == location] == [gone]  # one line, no traceback


def test_an_idle_request_body_is_cut(hardened: Server) -> None:
    location = start_upload(hardened, "e2e/idle")
    sock = raw_request(
        hardened,
        f"PATCH {location} HTTP/1.1\r\nHost: {hardened.host}\r\nAuthorization: {basic_header(hardened)}\r\n"
        "Content-Length: 1000\r\n\r\n",
        b"only ten b",  # ... and then nothing
    )
    answer = read_until_closed(sock)  # returns only because the server closes the connection
    assert answer.startswith(b"HTTP/1.1 408")
    [event] = wait_for_event(
        hardened, lambda e: e.get("event") == "request body timed out" and e.get("path") == location
    )
    assert event["level"] == "info"

    # The management API too (FastAPI would turn the failed body read into a 400 of its own).
    sock = raw_request(
        hardened,
        f"POST /api/v1/projects HTTP/1.1\r\nHost: {hardened.host}\r\nAuthorization: {basic_header(hardened)}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b'{"name": "idle-',
    )
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"application/problem+json" in answer
    wait_for_event(
        hardened, lambda e: e.get("event") == "request body timed out" and e.get("path") == "/api/v1/projects"
    )
    for path in (location, "/api/v1/projects"):  # one info line each, nothing else
        assert [e["event"] for e in log_events(hardened) if e.get("path") == path] == ["request body timed out"]


def test_unfinished_request_headers_are_cut(hardened: Server) -> None:
    sock = raw_request(hardened, f"GET /healthz HTTP/1.1\r\nHost: {hardened.host}\r\n")  # no blank line
    assert b" 200 " not in read_until_closed(sock)


def test_a_second_server_on_a_port_in_use_fails_at_start(hardened: Server, tmp_path: Path) -> None:
    other = tmp_path / "other"
    env = {**os.environ, "DOCKYARD_ADMIN_PASSWORD": "another-password", "DOCKYARD_VULNDB_SOURCES": "[]"}
    env.pop("DOCKYARD_DATABASE_URL", None)
    port = hardened.host.split(":")[1]
    args = [str(DOCKYARD), "serve", "--host", "127.0.0.1", "--port", port, "--data-dir", str(other)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # it started serving after all: stop it and everything it spawned
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1
    [event] = [json.loads(line) for line in out.decode().splitlines()]
    assert event["event"] == "cannot listen" and "already in use" in event["error"]
    assert not other.exists()  # refused before touching anything
    assert httpx.get(f"{hardened.url}/healthz", timeout=TIMEOUT).status_code == 200


# --- supervision ---------------------------------------------------------------------------------
def children(pid: int) -> set[int]:
    """Worker processes of the server `pid` (its children, less multiprocessing's helpers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z" and b"resource_tracker" not in cmdline:
            found.add(int(entry.name))
    return found


STARTED = {  # the log event each server writes when one worker is ready to serve
    "granian": lambda e: str(e.get("event", "")).startswith("Started worker-"),
    "uvicorn": lambda e: e.get("event") == "Application startup complete.",
}


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_killed_worker_is_replaced_and_the_others_keep_serving(tmp_path: Path, server: str) -> None:
    with running_server(tmp_path / "data", "sqlite", {"DOCKYARD_SERVER": server}, workers=2) as srv:
        wait_for_event(srv, STARTED[server], count=2)  # both workers serve
        before = children(srv.pid)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + PATIENCE
        while victim in children(srv.pid) or Path(f"/proc/{victim}").exists():  # until it is reaped
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(10):  # the survivor serves (new connections each time)
            assert httpx.get(f"{srv.url}/v2/", auth=(srv.username, srv.password), timeout=TIMEOUT).status_code == 200
        wait_for_event(srv, STARTED[server], count=3)  # ... and a replacement starts
        after = children(srv.pid)
        assert len(after) == 2 and victim not in after and len(after - before) == 1
        for _ in range(10):
            assert httpx.get(f"{srv.url}/v2/", auth=(srv.username, srv.password), timeout=TIMEOUT).status_code == 200
        assert not any(str(e.get("event", "")).startswith("Shutting down") for e in log_events(srv))
