#!/usr/bin/env python3
"""Online garbage collection under load, and against the reference registry's offline collector.

1. Fill a Dockyard data folder with a history: MANIFESTS images over REPOS repositories, each image a
   unique config + unique layer + two layers from a shared pool (shared across repositories).
2. Start `dockyard serve` (2 workers, background collector off) and measure pull throughput (wrk,
   manifest GET by tag) and push throughput (blob upload + manifest PUT, 4 threads) while idle.
3. Delete half the tags, run `dockyard gc` as a separate process, and measure the same pulls and pushes
   while it runs; report collection time, what it removed, and throughput as a fraction of idle.

The reference Go registry cannot do step 3 at all: its `garbage-collect` requires the registry to be
read-only or stopped. Usage:

    .venv/bin/python bench/bench_gc.py                 # 10,000 manifests over 1,000 repositories
    .venv/bin/python bench/bench_gc.py --quick         # 2,000 over 200
    .venv/bin/python bench/bench_gc.py --quick --postgres    # PostgreSQL instead of SQLite: the bench
                                                       # creates (and drops) its own database, bench_gc
    .venv/bin/python bench/bench_gc.py --quick --postgres postgresql+psycopg://postgres@host/postgres \
        --pg-database wt_x_bench                       # another server, another database name

`--storage` names the blob store (STORAGES: only the filesystem for now; a new store is one entry).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_registry import DOCKYARD, free_port, stop_process, wait_http, wrk_rps

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PASSWORD = "bench-password"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# Blob stores the bench can run on: the Settings fields each needs, given the bench's work folder.
STORAGES: dict[str, Callable[[Path], dict[str, str]]] = {
    "filesystem": lambda work: {"storage_path": str(work / "data" / "storage")},
}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(config: bytes, layers: Sequence[bytes]) -> bytes:
    """The OCI image manifest (JSON bytes) of this config and these layers."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(x), "size": len(x)} for x in layers
        ],
    }
    return json.dumps(doc).encode()


@contextmanager
def own_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one run (dropped afterwards); yields its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield str(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


def fill(
    data_dir: Path, manifests: int, repos: int, database_url: str | None, storage: dict[str, str]
) -> list[tuple[str, str]]:
    """Write the history straight through the services (fast, no HTTP); returns (repo, tag) pairs."""
    from dockyard.config import Settings
    from dockyard.wiring import build_services, prepare

    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_password=PASSWORD,
        fsync=False,
        **storage,  # type: ignore[arg-type]
    )
    svc = build_services(settings)
    prepare(svc)
    rnd = random.Random(1)
    pool = [os.urandom(64 * 1024) for _ in range(50)]
    for p in range(max(1, repos // 50)):
        svc.projects.create(f"p{p}", creator="admin")
    for layer in pool:
        svc.uploads.monolithic("p0/pool", sha(layer), [layer])
    tags = []
    for i in range(manifests):
        repo = f"p{(i % repos) % max(1, repos // 50)}/r{i % repos}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "i": i}).encode()
        own = os.urandom(16 * 1024)
        shared = rnd.sample(pool, 2)
        for blob in (config, own, *shared):
            svc.uploads.monolithic(repo, sha(blob), [blob])
        tag = f"v{i}"
        svc.manifests.put(repo, tag, manifest(config, [own, *shared]), OCI_MANIFEST)
        tags.append((repo, tag))
    svc.close()
    return tags


class Pusher:
    """Threads pushing small new images (2 blobs + manifest) as fast as they can."""

    def __init__(self, base: str, token: str, threads: int = 4) -> None:
        self.base, self.token, self.threads = base, token, threads
        self.count = 0
        self.errors = 0
        self.first_error = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=60) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                repo = f"p0/load{n}"
                layer, config = os.urandom(8 * 1024), json.dumps({"n": n, "i": i, "t": time.time()}).encode()
                failed = []
                for blob in (layer, config):
                    r = http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha(blob)}, content=blob)
                    if r.status_code != 201:
                        failed.append(f"blob upload: {r.status_code} {r.text[:300]}")
                r = http.put(
                    f"/v2/{repo}/manifests/t{i}",
                    content=manifest(config, [layer]),
                    headers={"Content-Type": OCI_MANIFEST},
                )
                if r.status_code != 201:
                    failed.append(f"manifest PUT: {r.status_code} {r.text[:300]}")
                with self._lock:
                    if not failed:
                        self.count += 1
                    else:
                        self.errors += 1
                        self.first_error = self.first_error or "; ".join(failed)

    def measure(self, seconds: float) -> float:
        self.count, self.errors = 0, 0
        self._stop.clear()
        threads = [threading.Thread(target=self._run, args=(n,)) for n in range(self.threads)]
        start = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(seconds)
        self._stop.set()
        for t in threads:
            t.join()
        if self.errors:
            raise RuntimeError(f"{self.errors} pushes failed, the first: {self.first_error}")
        return self.count / (time.monotonic() - start)


def queued(data: Path, database_url: str | None) -> int:
    if database_url:
        import sqlalchemy as sa

        engine = sa.create_engine(database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM gc_queue")).scalar_one())
        finally:
            engine.dispose()
    with sqlite3.connect(data / "dockyard.db", timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM gc_queue").fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--pace", type=float, default=None, help="fix the collector's gc_pace (default: measured)")
    ap.add_argument(
        "--postgres",
        nargs="?",
        const=PG_ADMIN,
        help=f"PostgreSQL instead of SQLite, through this server URL ({PG_ADMIN})",
    )
    ap.add_argument("--pg-database", default="bench_gc", help="the database the bench creates and drops")
    ap.add_argument("--storage", choices=sorted(STORAGES), default="filesystem")
    ap.add_argument("--manifests", type=int, help="history size (overrides --quick)")
    ap.add_argument("--repos", type=int, help="repositories (overrides --quick)")
    args = ap.parse_args()
    manifests, repos = (2000, 200) if args.quick else (10000, 1000)
    manifests, repos = args.manifests or manifests, args.repos or repos
    seconds = args.seconds or (5 if args.quick else 10)
    work = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    try:
        if args.postgres:
            with own_database(args.postgres, args.pg_database) as url:
                run(args, work, manifests, repos, seconds, url)
        else:
            run(args, work, manifests, repos, seconds, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, manifests: int, repos: int, seconds: int, db_url: str | None) -> None:
    data = work / "data"
    t0 = time.monotonic()
    storage = STORAGES[args.storage](work)
    tags = fill(data, manifests, repos, db_url, storage)
    engine = "PostgreSQL" if db_url else "SQLite"
    took = time.monotonic() - t0
    print(
        f"{engine}, {args.storage} storage: filled {manifests:,} manifests over {repos:,} repositories in {took:.0f} s"
    )
    port = free_port()
    env = {
        **os.environ,
        "DOCKYARD_ADMIN_PASSWORD": PASSWORD,
        "DOCKYARD_LOG_LEVEL": "warning",
        "DOCKYARD_GC_INTERVAL_SECONDS": "0",
        "DOCKYARD_GC_GRACE_SECONDS": "0",
        "DOCKYARD_FSYNC": "false",
        "DOCKYARD_SCANNER_ENABLED": "false",  # the fill queued 10,000 scans: not what this measures
        **{f"DOCKYARD_{key.upper()}": value for key, value in storage.items()},
    }
    if db_url:
        env["DOCKYARD_DATABASE_URL"] = db_url
    log = open(work / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [str(DOCKYARD), "serve", "--port", str(port), "--data-dir", str(data), "--workers", "2"],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", server, lambda s: s == 200, timeout=300)  # a shared machine starts slowly
        repo, tag = tags[-1]
        scopes = [("scope", f"repository:{repo}:pull")]
        scopes += [("scope", f"repository:p0/load{n}:pull,push") for n in range(4)]
        token = httpx.get(f"{base}/token", params=[("service", "dockyard"), *scopes], auth=("admin", PASSWORD)).json()[
            "token"
        ]
        pull_headers = {"Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST}
        pusher = Pusher(base, token)
        idle_pull = wrk_rps(f"{base}/v2/{repo}/manifests/{tag}", pull_headers, seconds)
        idle_push = pusher.measure(seconds)
        print(f"idle: {idle_pull:,.0f} pulls/s, {idle_push:,.1f} pushes/s")

        # Delete half the history (every other tag), as a user would, through the API.
        t0 = time.monotonic()
        with httpx.Client(base_url=base, auth=("admin", PASSWORD), timeout=60) as http:
            for r, t in tags[: len(tags) - 1 : 2]:
                http.delete(f"/v2/{r}/manifests/{t}").raise_for_status()
        print(f"deleted {len(tags) // 2:,} tags in {time.monotonic() - t0:.0f} s")

        gc_env = {**env, "DOCKYARD_DATA_DIR": str(data)}
        if args.pace is not None:
            gc_env["DOCKYARD_GC_PACE"] = str(args.pace)
        start = time.monotonic()
        queue_before = queued(data, db_url)
        gc = subprocess.Popen(
            [str(DOCKYARD), "gc"], env=gc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # Measure once it is collecting, not while the new process imports and opens the database
        # (a collector inside the server has no start-up; this one does, once).
        while queued(data, db_url) >= queue_before and gc.poll() is None:
            time.sleep(0.1)
        print(f"collector started removing after {time.monotonic() - start:.1f} s")
        busy_pull = wrk_rps(f"{base}/v2/{repo}/manifests/{tag}", pull_headers, seconds)
        busy_push = pusher.measure(seconds) if gc.poll() is None else float("nan")
        out, _ = gc.communicate()
        gc_seconds = time.monotonic() - start
        print(out.strip().splitlines()[0])
        print(f"collection took {gc_seconds:.1f} s")
        print()
        print("| measurement | idle | while collecting | ratio |")
        print("|---|---:|---:|---:|")
        rows = [
            ("manifest GET by tag (wrk, 32 conns), req/s", idle_pull, busy_pull, ",.0f"),
            ("push (2 blobs + manifest, 4 threads), images/s", idle_push, busy_push, ",.1f"),
        ]
        for label, idle, busy, fmt in rows:
            print(f"| {label} | {idle:{fmt}} | {busy:{fmt}} | {busy / idle:.2f} |")
        if gc.poll() is not None and gc_seconds < 2 * seconds:
            print("note: the collection finished before the second measurement ended; the ratios cover part idle time")
    finally:
        stop_process(server)


if __name__ == "__main__":
    main()
