#!/usr/bin/env python3
"""How the audit log reads at scale: fill it with N events (default 1,000,000) spread over many
projects, repositories, actors and actions, then time filtered queries on the first page and on a deep
page (reached by following the cursor), and a full filtered export. On SQLite and, with --postgres URL,
PostgreSQL. The reference registry has no audit log, so there is no ratio here: these are absolute times.

    .venv/bin/python bench/bench_audit.py [--events 1000000] [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.audit import AuditFilter, AuditLog

ACTIONS = ["pull"] * 80 + ["push"] * 12 + ["delete"] * 3 + ["login"] * 5


def fill(db: Database, n: int) -> None:
    rnd = random.Random(7)
    start = time.time() - 365 * 86400
    batch = []
    for i in range(n):
        project = f"p{rnd.randrange(200)}"
        batch.append(
            {
                "ts": start + i * (365 * 86400 / n),
                "actor": f"user{rnd.randrange(2000)}",
                "actor_kind": "user",
                "provider": "local",
                "source_ip": f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}",
                "user_agent": "containers/5.30",
                "action": rnd.choice(ACTIONS),
                "project": project,
                "repository": f"{project}/r{rnd.randrange(20)}",
                "reference": "v1",
                "digest": f"sha256:{rnd.getrandbits(256):064x}",
                "result": "success",
                "detail": None,
            }
        )
        if len(batch) == 20000:
            with db.write() as conn:
                conn.execute(sa.insert(s.audit_events), batch)
            batch = []
    if batch:
        with db.write() as conn:
            conn.execute(sa.insert(s.audit_events), batch)


def timed(fn, reps: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run(label: str, db: Database, n: int) -> None:
    db.migrate()
    t0 = time.perf_counter()
    fill(db, n)
    print(f"[{label}] inserted {n:,} events in {time.perf_counter() - t0:.1f} s")
    audit = AuditLog(db)
    filters = {
        "no filter": AuditFilter(),
        "project": AuditFilter(project="p17"),
        "repository": AuditFilter(repository="p17/r3"),
        "actor": AuditFilter(actor="user42"),
        "action=delete": AuditFilter(action="delete"),
        "project+last 30 days": AuditFilter(project="p17", since=time.time() - 30 * 86400),
    }
    for name, f in filters.items():
        first = timed(lambda f=f: audit.query(f, 100))
        # Walk 20 pages deep with the cursor, then time the page there.
        cursor = None
        for _ in range(20):
            _, cursor = audit.query(f, 100, cursor)
        deep = timed(lambda f=f, c=cursor: audit.query(f, 100, c))
        print(f"[{label}] {name:<22} first page {first:7.2f} ms   page 21 {deep:7.2f} ms")
    t0 = time.perf_counter()
    lines = sum(chunk.count("\n") for chunk in audit.export(AuditFilter(project="p17"), "jsonl"))
    print(f"[{label}] export project p17: {lines:,} events as JSON lines in {time.perf_counter() - t0:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--postgres", help="PostgreSQL URL of a server to create a scratch database on")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/audit.db")
        run("sqlite", db, args.events)
        db.dispose()
    if args.postgres:
        admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        name = f"dockyard_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        db = Database(url)
        try:
            run("postgres", db, args.events)
        finally:
            db.dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
