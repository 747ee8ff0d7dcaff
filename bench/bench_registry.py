#!/usr/bin/env python3
"""Dockyard against the reference Go registry (Debian `docker-registry`) and nginx, in one run.

Both registries run on loopback with token authentication; every measured request carries a bearer
token. Measurements alternate between the two registries (A/B, B/A, …) and report the median of the
repetitions, so a noisy neighbour hurts both alike. Usage:

    .venv/bin/python bench/bench_registry.py            # full run (100,000 tags; ~10 minutes)
    .venv/bin/python bench/bench_registry.py --quick    # 10,000 tags, fewer repetitions
    ... --s3             # both registries' blobs in buckets of one moto_server the bench starts
    ... --replicas 3     # three Dockyard replicas on PostgreSQL behind haproxy (docs/deploy/haproxy.cfg)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
DOCKYARD = Path(sys.executable).with_name("dockyard")
MiB = 1024 * 1024
BLOB_SIZE = 256 * MiB
CHUNK = 16 * MiB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# "https" with --tls: both registries serve HTTPS with a certificate from a CA made for the run, which
# httpx (SSL_CERT_FILE) and curl (CURL_CA_BUNDLE) trust; wrk does not verify certificates.
SCHEME = "http"
TLS_FILES: tuple[Path, Path] | None = None  # (certificate, key) with --tls


def enable_tls(work: Path) -> None:
    global SCHEME, TLS_FILES
    sys.path.insert(0, str(ROOT))
    from tests.support.tls import make_tls_files

    ca, cert, key = make_tls_files(work)
    os.environ["SSL_CERT_FILE"] = os.environ["CURL_CA_BUNDLE"] = str(ca)
    SCHEME, TLS_FILES = "https", (cert, key)


POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/dockyard_bench"
S3: Any = None  # with --s3: the moto server (tests/support/s3.py) whose buckets both registries use


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(p: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=20)


def wait_http(url: str, proc: subprocess.Popen[bytes], ok: Callable[[int], bool], timeout: float = 180) -> None:
    """Wait until `url` answers a status `ok` accepts; stop the process if it never does."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if ok(httpx.get(url, timeout=2, headers={"Range": "bytes=0-0"}).status_code):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{url} did not come up")
    except BaseException:
        stop_process(proc)
        raise


def tree_status(pid: int) -> dict[int, tuple[int, int]]:
    """(VmRSS, VmHWM) in KiB of a process and each of its descendants, by pid."""
    found: dict[int, tuple[int, int]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            found[p] = (rss, hwm)
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size (KiB): a page shared by n processes counts 1/n in each, so a tree's sum
    is the memory it really holds; a sum of VmRSS counts shared pages (libraries, pages a forked
    worker still shares with its supervisor) once per process."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    found = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
    return int(found.group(1)) if found else 0


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (KiB)."""
    return sum(rss for rss, _ in tree_status(pid).values())


@dataclass
class Target:
    """A registry under test: where it is, and how to get a token for a set of scopes."""

    name: str
    base: str
    proc: subprocess.Popen[bytes]
    token_for: Callable[[list[str]], str]
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    # Per process (pid): the largest VmRSS sampled, and the last VmHWM read (the kernel's own peak).
    process_peak_kib: dict[int, int] = field(default_factory=dict)
    process_hwm_kib: dict[int, int] = field(default_factory=dict)
    # The tree's sampled peak during each group of rows (uploads, downloads, ...).
    phase_peak_kib: dict[str, int] = field(default_factory=dict)
    tokens: dict[tuple[str, ...], str] = field(default_factory=dict)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)  # more replicas, counted in its RSS

    def token(self, *scopes: str) -> str:
        key = tuple(scopes)
        if key not in self.tokens:
            self.tokens[key] = self.token_for(list(scopes))
        return self.tokens[key]

    def auth(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*scopes)}"}


class RssSampler(threading.Thread):
    def __init__(self, targets: list[Target]) -> None:
        super().__init__(daemon=True)
        self.targets = targets
        self.stop = threading.Event()
        self.phase = "start"

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for t in self.targets:
                found = {k: v for p in (t.proc, *t.others) for k, v in tree_status(p.pid).items()}
                total = sum(rss for rss, _ in found.values())
                t.peak_rss_kib = max(t.peak_rss_kib, total)
                t.peak_pss_kib = max(t.peak_pss_kib, sum(pss_kib(pid) for pid in found))
                t.phase_peak_kib[self.phase] = max(t.phase_peak_kib.get(self.phase, 0), total)
                for pid, (rss, hwm) in found.items():
                    t.process_peak_kib[pid] = max(t.process_peak_kib.get(pid, 0), rss)
                    t.process_hwm_kib[pid] = hwm


def memory_breakdown(targets: list[Target]) -> str:
    """Per process and per group of rows, for bench/README.md's memory section."""
    lines = []
    for t in targets:
        root = t.proc.pid
        parts = ", ".join(
            f"{'root' if pid == root else pid}: peak {t.process_peak_kib[pid] / 1024:.0f} / HWM {hwm / 1024:.0f}"
            for pid, hwm in sorted(t.process_hwm_kib.items())
        )
        hwm_sum = sum(t.process_hwm_kib.values()) / 1024
        lines.append(f"{t.name}: sampled tree peak {t.peak_rss_kib / 1024:.0f} MiB, sum of VmHWM {hwm_sum:.0f} MiB")
        lines.append(f"  processes (MiB): {parts}")
        phases = ", ".join(f"{k} {v / 1024:.0f}" for k, v in t.phase_peak_kib.items())
        lines.append(f"  tree peak by group (MiB): {phases}")
    return "\n".join(lines)


# --- the reference registry with token auth ---------------------------------------------------
def libtrust_kid(public_der: bytes) -> str:
    b32 = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def reference_storage(work: Path) -> str:
    """The reference's `storage:` driver section: its filesystem, or (--s3) a bucket of the bench's
    moto server through distribution's s3 driver (`regionendpoint`: path-style, any endpoint)."""
    if S3 is None:
        return f"  filesystem:\n    rootdirectory: {work / 'ref-data'}"
    return (
        f"  s3:\n    accesskey: {S3.access_key}\n    secretkey: {S3.secret_key}\n    region: {S3.region}\n"
        f"    regionendpoint: {S3.endpoint_url}\n    bucket: {S3.new_bucket()}\n    secure: false\n"
        "    v4auth: true\n  redirect:\n    disable: true"  # stream blobs, as Dockyard does by default
    )


def start_reference(work: Path) -> Target:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-token-issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    (work / "ref-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    port = free_port()
    (work / "ref-config.yml").write_text(
        f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
{reference_storage(work)}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}{reference_tls()}
auth:
  token:
    realm: {SCHEME}://127.0.0.1:{port}/token
    service: reference
    issuer: bench
    rootcertbundle: {work / "ref-cert.pem"}
"""
    )
    kid = libtrust_kid(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def token_for(scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, rest = scope.split(":", 1)
            target, actions = rest.rsplit(":", 1)
            access.append({"type": kind, "name": target, "actions": actions.split(",")})
        issued = int(time.time())
        claims = {
            "iss": "bench",
            "sub": "admin",
            "aud": "reference",
            "exp": issued + 3600,
            "nbf": issued - 5,
            "iat": issued,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

    log = open(work / "ref.log", "wb")  # noqa: SIM115 - lives as long as the process
    # An AWS_CA_BUNDLE in the environment makes distribution's s3 driver panic (its HTTP transport cannot take one).
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "ref-config.yml")], stdout=log, stderr=log, env=env)
    wait_http(f"{SCHEME}://127.0.0.1:{port}/v2/", proc, lambda s: s == 401)
    return Target("reference", f"{SCHEME}://127.0.0.1:{port}", proc, token_for)


def fresh_postgres_database(url: str) -> str:
    """Drop and create the database `url` names (through the server's `postgres` database), so every
    run starts empty as the SQLite one does; returns `url`."""
    from sqlalchemy import create_engine, make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    return url


def start_dockyard(work: Path, workers: int, database_url: str | None = None, replicas: int = 0) -> Target:
    """One `dockyard serve`, or (`replicas` > 0) that many on `database_url` behind haproxy."""
    if replicas:
        return start_replicas(work, workers, database_url or POSTGRES_DEFAULT, replicas)
    port = free_port()
    password = secrets.token_urlsafe(12)
    # No background scanning: the reference registry does none, and these rows time the registry alone.
    env = {
        **os.environ,
        "DOCKYARD_ADMIN_PASSWORD": password,
        "DOCKYARD_LOG_LEVEL": "warning",
        "DOCKYARD_SCANNER_ENABLED": "false",
        # An hour, like the reference's tokens: a slow fill on a busy machine outlives the 5-minute default.
        "DOCKYARD_TOKEN_TTL_SECONDS": "3600",
    }
    if TLS_FILES:
        env |= {"DOCKYARD_TLS_CERT_FILE": str(TLS_FILES[0]), "DOCKYARD_TLS_KEY_FILE": str(TLS_FILES[1])}
    if database_url:
        env["DOCKYARD_DATABASE_URL"] = fresh_postgres_database(database_url)
    if S3 is not None:
        env |= S3.env(S3.new_bucket())
    log = open(work / "dockyard.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(DOCKYARD),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(work / "dockyard-data"),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"{SCHEME}://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", proc, lambda s: s == 200)

    def token_for(scopes: list[str]) -> str:
        r = httpx.get(
            f"{base}/token", params=[("service", "dockyard"), *[("scope", s) for s in scopes]], auth=("admin", password)
        )
        r.raise_for_status()
        return str(r.json()["token"])

    return Target("dockyard", base, proc, token_for)


def haproxy_config(work: Path, replicas: int) -> Path:
    """docs/deploy/haproxy.cfg for `replicas` servers; without --tls, its frontend on plain HTTP."""
    cfg = (ROOT / "docs" / "deploy" / "haproxy.cfg").read_text()
    servers = "".join(f'    server replica{i} "${{DOCKYARD_REPLICA{i}}}"\n' for i in range(1, replicas + 1))
    cfg = re.sub(r'(    server replica\d+ "\$\{DOCKYARD_REPLICA\d+\}"\n)+', servers, cfg)
    if not TLS_FILES:
        cfg = cfg.replace(' ssl crt "${HAPROXY_CERT}"', "").replace("X-Forwarded-Proto https", "X-Forwarded-Proto http")
    path = work / "haproxy.cfg"
    path.write_text(cfg)
    return path


def start_replicas(work: Path, workers: int, database_url: str, replicas: int) -> Target:
    """`replicas` Dockyards on one PostgreSQL database and one storage (the bucket with --s3, else a
    folder), plain HTTP behind haproxy, which terminates TLS with --tls."""
    password = secrets.token_urlsafe(12)
    lb_port = free_port()
    base = f"{SCHEME}://127.0.0.1:{lb_port}"
    env = {
        **os.environ,
        "DOCKYARD_ADMIN_PASSWORD": password,
        "DOCKYARD_LOG_LEVEL": "warning",
        "DOCKYARD_SCANNER_ENABLED": "false",
        "DOCKYARD_TOKEN_TTL_SECONDS": "3600",
        "DOCKYARD_DATABASE_URL": fresh_postgres_database(database_url),
        "DOCKYARD_PUBLIC_URL": base,
        "DOCKYARD_TRUSTED_PROXIES": '["127.0.0.1/32"]',
    }
    env |= S3.env(S3.new_bucket()) if S3 is not None else {"DOCKYARD_STORAGE_PATH": str(work / "dockyard-blobs")}
    procs, ports = [], [free_port() for _ in range(replicas)]
    try:
        for i, port in enumerate(ports, 1):
            data = work / f"dockyard-data{i}"
            log = open(work / f"dockyard{i}.log", "wb")  # noqa: SIM115
            args = [str(DOCKYARD), "serve", "--port", str(port), "--data-dir", str(data), "--workers", str(workers)]
            procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=log))
        for port, proc in zip(ports, procs, strict=True):
            wait_http(f"http://127.0.0.1:{port}/readyz", proc, lambda s: s == 200)
        lb_env = {
            **os.environ,
            "HAPROXY_BIND": f"127.0.0.1:{lb_port}",
            "HAPROXY_ADMIN_SOCKET": str(work / "haproxy.sock"),
            **{f"DOCKYARD_REPLICA{i}": f"127.0.0.1:{port}" for i, port in enumerate(ports, 1)},
        }
        if TLS_FILES:
            pem = work / "haproxy.pem"  # chain and key in one file
            pem.write_bytes(TLS_FILES[0].read_bytes() + TLS_FILES[1].read_bytes())
            lb_env["HAPROXY_CERT"] = str(pem)
        log = open(work / "haproxy.log", "wb")  # noqa: SIM115
        lb = subprocess.Popen(
            ["haproxy", "-db", "-f", str(haproxy_config(work, replicas))], env=lb_env, stdout=log, stderr=log
        )
        procs.append(lb)
        wait_http(f"{base}/readyz", lb, lambda s: s == 200)
    except BaseException:
        for p in procs:
            stop_process(p)
        raise

    def token_for(scopes: list[str]) -> str:
        r = httpx.get(
            f"{base}/token", params=[("service", "dockyard"), *[("scope", s) for s in scopes]], auth=("admin", password)
        )
        r.raise_for_status()
        return str(r.json()["token"])

    # haproxy last: the RSS rows count the replicas (haproxy's own is a few MiB).
    return Target("dockyard", base, procs[0], token_for, others=procs[1:])


def reference_tls() -> str:
    if not TLS_FILES:
        return ""
    return f"\n  tls:\n    certificate: {TLS_FILES[0]}\n    key: {TLS_FILES[1]}"


def start_nginx(work: Path, blob: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    root = work / "nginx-root"
    root.mkdir()
    os.link(blob, root / "blob")
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {work}/nginx-tmp;
  proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp;
  scgi_temp_path {work}/nginx-tmp;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
    )
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/blob"
    wait_http(url, proc, lambda s: s in (200, 206))
    return proc, url


# --- measurements -------------------------------------------------------------------------------
def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-s", "-S", "--fail-with-body", *args], check=True, capture_output=True, text=True
    ).stdout


def start_upload(t: Target, repo: str) -> str:
    r = httpx.post(f"{t.base}/v2/{repo}/blobs/uploads/", headers=t.auth(f"repository:{repo}:pull,push"))
    assert r.status_code == 202, r.text
    loc = r.headers["location"]
    return loc if loc.startswith("http") else t.base + loc


def with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def upload_monolithic(t: Target, repo: str, blob: Path, digest: str) -> float:
    loc = start_upload(t, repo)
    auth = t.auth(f"repository:{repo}:pull,push")["Authorization"]
    start = time.perf_counter()
    curl(
        "-X",
        "PUT",
        "-T",
        str(blob),
        "-H",
        "Expect:",
        "-H",
        f"Authorization: {auth}",
        "-H",
        "Content-Type: application/octet-stream",
        "-o",
        "/dev/null",
        with_digest(loc, digest),
    )
    return BLOB_SIZE / MiB / (time.perf_counter() - start)


def upload_chunked(t: Target, repo: str, chunks: list[bytes], digest: str) -> float:
    """POST, then one PATCH per chunk with Content-Range, then PUT ?digest=, all on one keep-alive
    connection as container clients do."""
    headers = t.auth(f"repository:{repo}:pull,push")
    with httpx.Client(timeout=300, headers=headers) as client:
        client.get(f"{t.base}/v2/")  # connect outside the timing
        start = time.perf_counter()
        r = client.post(f"{t.base}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        offset = 0
        for chunk in chunks:
            loc = r.headers["location"]
            r = client.patch(
                loc if loc.startswith("http") else t.base + loc,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
            assert r.status_code == 202, r.text
            offset += len(chunk)
        loc = r.headers["location"]
        r = client.put(with_digest(loc if loc.startswith("http") else t.base + loc, digest))
        assert r.status_code == 201, r.text
        return BLOB_SIZE / MiB / (time.perf_counter() - start)


def download(url: str, streams: int, headers: dict[str, str]) -> float:
    hdr = [x for k, v in headers.items() for x in ("-H", f"{k}: {v}")]
    start = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-s", "-f", "-o", "/dev/null", *hdr, url]) for _ in range(streams)]
    for p in procs:
        assert p.wait() == 0, "download failed"
    return streams * BLOB_SIZE / MiB / (time.perf_counter() - start)


def wrk_rps(url: str, headers: dict[str, str], seconds: int, extra: tuple[str, ...] = ()) -> float:
    hdr = [x for k, v in headers.items() for x in ("-H", f"{k}: {v}")]
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", *extra, *hdr, url], check=True, capture_output=True, text=True
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def median_ms(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def tiny_manifest(config_digest: str, config_size: int, note: str = "") -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [],
    }
    if note:
        doc["annotations"] = {"bench": note}
    return json.dumps(doc).encode()


def put_config(t: Target, repo: str, config: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    loc = start_upload(t, repo)
    r = httpx.put(with_digest(loc, digest), content=config, headers=t.auth(f"repository:{repo}:pull,push"))
    assert r.status_code == 201, r.text
    return digest


async def _fill(t: Target, requests: list[tuple[str, str, dict[str, str], bytes]], inflight: int = 32) -> float:
    """Send (method, url, headers, body) requests with `inflight` concurrency; returns requests/s."""
    sem = asyncio.Semaphore(inflight)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=inflight)) as client:

        async def one(method: str, url: str, headers: dict[str, str], body: bytes) -> None:
            async with sem:
                r = await client.request(method, url, headers=headers, content=body)
                if r.status_code >= 300:
                    raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(one(*req) for req in requests))
        return len(requests) / (time.perf_counter() - start)


def fill_tags(t: Target, repo: str, count: int) -> float:
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = put_config(t, repo, config)
    body = tiny_manifest(digest, len(config))
    headers = {**t.auth(f"repository:{repo}:pull,push"), "Content-Type": OCI_MANIFEST}
    reqs = [("PUT", f"{t.base}/v2/{repo}/manifests/t{i:06d}", headers, body) for i in range(count)]
    return asyncio.run(_fill(t, reqs))


def fill_repositories(t: Target, count: int) -> float:
    config = b'{"architecture":"amd64","os":"linux","bench":"catalog"}'
    digest = put_config(t, "cat/source", config)
    body = tiny_manifest(digest, len(config))
    mounts, manifests = [], []
    for i in range(count):
        repo = f"cat/r{i:05d}"
        headers = t.auth(f"repository:{repo}:pull,push", "repository:cat/source:pull")
        mounts.append(("POST", f"{t.base}/v2/{repo}/blobs/uploads/?mount={digest}&from=cat/source", headers, b""))
        manifests.append(("PUT", f"{t.base}/v2/{repo}/manifests/v1", {**headers, "Content-Type": OCI_MANIFEST}, body))
    rate = asyncio.run(_fill(t, mounts))
    asyncio.run(_fill(t, manifests))
    return rate


def all_tags(t: Target, repo: str, client: httpx.Client) -> int:
    """Fetch the whole tag list, following Link headers if the registry pages it."""
    url: str | None = f"{t.base}/v2/{repo}/tags/list"
    n = 0
    while url:
        r = client.get(url, headers=t.auth(f"repository:{repo}:pull"))
        r.raise_for_status()
        n += len(r.json()["tags"] or [])
        link = r.headers.get("link")
        url = (t.base + link[1 : link.index(">")]) if link else None
    return n


@dataclass
class Row:
    label: str
    unit: str
    values: dict[str, float]
    higher_is_better: bool = True
    note: str = ""


def alternate(targets: list[Target], reps: int, fn: Callable[[Target, int], float]) -> dict[str, float]:
    """Median over `reps` of fn(target, rep), alternating the order of targets every repetition."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    for rep in range(reps):
        order = targets if rep % 2 == 0 else list(reversed(targets))
        for t in order:
            samples[t.name].append(fn(t, rep))
    return {name: statistics.median(vals) for name, vals in samples.items()}


def latency_row(label: str, targets: list[Target], reps: int, fn: Callable[[Target, int], float]) -> Row:
    """A row of median milliseconds per target (`alternate`d), lower being better."""
    return Row(label, "ms", alternate(targets, reps, fn), higher_is_better=False)


def run_bench(args: argparse.Namespace) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    procs: list[subprocess.Popen[bytes]] = []
    try:
        blob = work / "blob"
        chunks = [os.urandom(CHUNK) for _ in range(BLOB_SIZE // CHUNK)]
        blob.write_bytes(b"".join(chunks))
        digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
        if args.tls:
            enable_tls(work)

        if args.s3:
            global S3
            sys.path.insert(0, str(ROOT))
            from tests.support.s3 import launch_s3

            S3 = launch_s3()
        dockyard = start_dockyard(work, args.workers, args.postgres, args.replicas)
        procs.extend([dockyard.proc, *dockyard.others])
        reference = start_reference(work)
        procs.append(reference.proc)
        nginx, nginx_url = start_nginx(work, blob)
        procs.append(nginx)
        targets = [dockyard, reference]
        sampler = RssSampler(targets)
        sampler.start()
        rows: list[Row] = []
        reps = args.reps

        def log(msg: str) -> None:
            sampler.phase = msg
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

        want = lambda group: not args.only or group in args.only  # noqa: E731
        if want("uploads"):
            log("uploads")
            rows.append(
                Row(
                    "blob upload, 256 MiB monolithic",
                    "MB/s",
                    alternate(targets, reps, lambda t, i: upload_monolithic(t, f"up/mono{i}", blob, digest)),
                )
            )
            rows.append(
                Row(
                    "blob upload, 256 MiB in 16 MiB chunks",
                    "MB/s",
                    alternate(targets, reps, lambda t, i: upload_chunked(t, f"up/chunk{i}", chunks, digest)),
                )
            )
        else:
            for t in targets:
                upload_monolithic(t, "up/mono0", blob, digest)

        log("downloads")
        for streams in (1, 8) if want("downloads") else ():

            def dl(t: Target, _i: int, streams: int = streams) -> float:
                return download(f"{t.base}/v2/up/mono0/blobs/{digest}", streams, t.auth("repository:up/mono0:pull"))

            values = alternate(targets, reps, dl)
            values["nginx"] = statistics.median(download(nginx_url, streams, {}) for _ in range(reps))
            rows.append(Row(f"blob download, {streams} stream{'s' if streams > 1 else ''}", "MB/s", values))

        config = b'{"architecture":"amd64","os":"linux"}'
        log("manifest")
        manifest_digest: dict[str, str] = {}
        for t in targets if want("manifest") else ():
            cfg = put_config(t, "hot/app", config)
            r = httpx.put(
                f"{t.base}/v2/hot/app/manifests/latest",
                content=tiny_manifest(cfg, len(config)),
                headers={**t.auth("repository:hot/app:pull,push"), "Content-Type": OCI_MANIFEST},
            )
            assert r.status_code == 201, r.text
            manifest_digest[t.name] = r.headers["docker-content-digest"]
        hot_rows = [
            ("manifest GET by tag (wrk, 32 conns)", lambda t: "manifests/latest", ()),
            ("manifest GET by digest (wrk, 32 conns)", lambda t: f"manifests/{manifest_digest[t.name]}", ()),
        ]
        for label, path, extra in hot_rows if want("manifest") else ():
            repo = "up/mono0" if path(targets[0]).startswith("blobs/") else "hot/app"

            def hot(t: Target, _i: int, repo: str = repo, path=path, extra=extra) -> float:  # type: ignore[no-untyped-def]
                headers = {**t.auth(f"repository:{repo}:pull"), "Accept": OCI_MANIFEST}
                return wrk_rps(f"{t.base}/v2/{repo}/{path(t)}", headers, args.wrk_seconds, extra)

            rows.append(Row(label, "req/s", alternate(targets, reps, hot)))

        for count in (1000, args.many_tags) if want("tags") else ():
            log(f"{count} tags")
            repo = f"tags/n{count}"
            fill = {t.name: fill_tags(t, repo, count) for t in targets}
            rows.append(Row(f"tag push while filling {count:,} tags (32 in flight)", "req/s", fill))
            with httpx.Client(timeout=120) as client:  # one keep-alive client: time the server, not set-up
                for t in targets:
                    assert all_tags(t, repo, client) == count, t.name

                def list_tags(t: Target, _i: int, repo: str = repo, client: httpx.Client = client) -> float:
                    return median_ms(lambda: all_tags(t, repo, client), 5)

                rows.append(latency_row(f"tags/list, {count:,} tags (full list)", targets, reps, list_tags))

        if want("catalog"):
            log("catalog")
            fill = {t.name: fill_repositories(t, args.repos) for t in targets}
            rows.append(Row(f"cross-repo mount while filling {args.repos:,} repositories", "req/s", fill))

        def catalog(t: Target, _i: int) -> float:
            headers = t.auth("registry:catalog:*")
            with httpx.Client(timeout=60) as client:
                client.get(f"{t.base}/v2/", headers=headers)  # connect outside the timing

                def once() -> None:
                    r = client.get(f"{t.base}/v2/_catalog", params={"n": 100}, headers=headers)
                    assert r.status_code == 200 and len(r.json()["repositories"]) == 100, r.text

                return median_ms(once, 9)

        if want("catalog"):
            rows.append(
                latency_row(f"_catalog first page (n=100), {args.repos:,} repositories", targets, reps, catalog)
            )
        sampler.stop.set()
        sampler.join()
        print(memory_breakdown(targets), file=sys.stderr)
        rows.append(
            Row(
                "peak RSS, whole process tree",
                "MiB",
                {t.name: t.peak_rss_kib / 1024 for t in targets},
                higher_is_better=False,
                note=f"Dockyard: supervisor + {args.workers} workers",
            )
        )
        rows.append(
            Row(
                "peak PSS, whole process tree",
                "MiB",
                {t.name: t.peak_pss_kib / 1024 for t in targets},
                higher_is_better=False,
                note="shared pages counted once",
            )
        )
        return rows
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            stop_process(p)
        if S3 is not None:
            S3.stop()
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def render(rows: list[Row]) -> str:
    lines = [
        "| measurement | unit | Dockyard | reference | nginx | Dockyard/reference | Dockyard/nginx |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d, ref, ngx = r.values.get("dockyard"), r.values.get("reference"), r.values.get("nginx")
        fmt = lambda v: "" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:,.1f}")  # noqa: E731
        ratio = f"{d / ref:.2f}" if d and ref else ""
        ratio_ngx = f"{d / ngx:.2f}" if d and ngx else ""
        if not r.higher_is_better and ratio:
            ratio += " (lower is better)"
        lines.append(f"| {r.label} | {r.unit} | {fmt(d)} | {fmt(ref)} | {fmt(ngx)} | {ratio} | {ratio_ngx} |")
    return "\n".join(lines)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 tags instead of 100,000; 3 repetitions")
    parser.add_argument("--workers", type=int, default=2, help="Dockyard worker processes (default 2 = cores)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 3, quick 3)")
    parser.add_argument("--repos", type=int, default=10_000, help="repositories for the _catalog row")
    parser.add_argument("--many-tags", type=int, help="tags of the second tag-list row (default 100,000; quick 10,000)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["uploads", "downloads", "manifest", "tags", "catalog"],
        help="run only these groups of rows",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--tls", action="store_true", help="both registries over HTTPS (nginx stays plain HTTP)")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=POSTGRES_DEFAULT,
        metavar="URL",
        help=f"run Dockyard on PostgreSQL: this database is dropped and created again (default {POSTGRES_DEFAULT})",
    )
    parser.add_argument(
        "--s3", action="store_true", help="both registries' blobs on S3 (a moto_server the bench starts)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        metavar="N",
        help="N Dockyard replicas on PostgreSQL (--postgres, or its default) behind haproxy; one reference",
    )
    args = parser.parse_args()
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally block stops the servers and removes the work folder.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    args.many_tags = args.many_tags or (10_000 if args.quick else 100_000)
    args.reps = args.reps or 3
    args.wrk_seconds = 5 if args.quick else 10
    for tool in ("docker-registry", "nginx", "wrk", "curl", *(("haproxy",) if args.replicas else ())):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (scripts/system-deps.sh installs it)")
    rows = run_bench(args)
    database = "PostgreSQL" if args.postgres or args.replicas else "SQLite"
    shape = (
        f"{args.replicas} replicas x {args.workers} workers behind haproxy"
        if args.replicas
        else f"{args.workers} workers"
    )
    print(
        f"\nDockyard ({shape}, {database}) vs reference registry (docker-registry, one instance) vs nginx, "
        f"{'blobs on S3 (moto), ' if args.s3 else ''}{'over HTTPS, ' if args.tls else ''}"
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs\n"
    )
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))


if __name__ == "__main__":
    main()
