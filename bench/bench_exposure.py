#!/usr/bin/env python3
"""The exposure report at scale: N pull events (default 1,000,000) in the audit log over 2,000 image
digests in 200 projects, then the report for a narrow advisory (5 images: ~0.25% of the pulls) and a
wide one (200 images: ~10%), as a system administrator and as a user who may read 10 projects, and
the CSV export of the wide one. On SQLite and, with --postgres URL, PostgreSQL. Absolute times (the
reference registry has nothing like it).

    .venv/bin/python bench/bench_exposure.py [--pulls 1000000] [--quick] [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from dockyard.config import Settings
from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services import pull_rollups
from dockyard.services.exposure import ExposureQuery
from dockyard.wiring import Services, build_services

IMAGES, PROJECTS = 2000, 200


def digest(i: int) -> str:
    return f"sha256:{i:064x}"


def fill(db: Database, pulls: int) -> None:
    rnd = random.Random(11)
    start = time.time() - 90 * 86400
    with db.write() as conn:
        conn.execute(
            sa.insert(s.repositories),
            [{"id": p + 1, "name": f"p{p}/app", "created_at": start} for p in range(PROJECTS)],
        )
        conn.execute(
            sa.insert(s.manifests),
            [
                {"repository_id": i % PROJECTS + 1, "digest": digest(i), "media_type": "application/json",
                 "size": 2, "content": b"{}", "created_at": start}
                for i in range(IMAGES)
            ],
        )  # fmt: skip
        conn.execute(
            sa.insert(s.tags), [{"repository_id": i % PROJECTS + 1, "name": f"t{i}", "manifest_id": i + 1,
                                 "updated_at": start} for i in range(IMAGES)]
        )  # fmt: skip
        findings, aliases, history = [], [], []
        for i in range(IMAGES):
            advisory = "NARROW-1" if i < 5 else "WIDE-1" if i < 200 else f"OTHER-{i % 50}"
            for adv in {advisory, "WIDE-1"} if i < 5 else {advisory}:
                findings.append(
                    {"digest": digest(i), "advisory_id": adv, "aliases": "[]", "ecosystem": "pypi", "package": "pkg",
                     "version": "1", "purl": "pkg:pypi/pkg@1", "path": "/", "severity": "high", "link": "",
                     "summary": ""}
                )  # fmt: skip
                aliases.append({"alias": adv, "digest": digest(i), "advisory_id": adv})
            history.append(
                {"project": f"p{i % PROJECTS}", "repository": f"p{i % PROJECTS}/app", "tag": f"t{i}",
                 "digest": digest(i), "previous_digest": None, "action": "moved", "at": start, "actor": "ci",
                 "actor_kind": "robot"}
            )  # fmt: skip
        conn.execute(sa.insert(s.image_findings), findings)
        conn.execute(sa.insert(s.finding_aliases), aliases)
        conn.execute(sa.insert(s.tag_history), history)
    batch = []
    for n in range(pulls):
        i = rnd.randrange(IMAGES)
        project = f"p{i % PROJECTS}"
        batch.append(
            {"ts": start + n * (90 * 86400 / pulls), "actor": f"user{rnd.randrange(500)}", "actor_kind": "user",
             "provider": "local", "source_ip": f"10.0.{rnd.randrange(64)}.{rnd.randrange(256)}",
             "user_agent": "containerd/1.7", "action": "pull", "project": project, "repository": f"{project}/app",
             "reference": f"t{i}", "digest": digest(i), "result": "success", "detail": None}
        )  # fmt: skip
        if len(batch) == 20000:
            with db.write() as conn:
                conn.execute(sa.insert(s.audit_events), batch)
                pull_rollups.add(db, conn, batch)  # as the audit log's writer does
            batch = []
    if batch:
        with db.write() as conn:
            conn.execute(sa.insert(s.audit_events), batch)
            pull_rollups.add(db, conn, batch)
    if not db.is_sqlite:
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE")


def timed(fn, reps: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run(label: str, svc: Services, pulls: int) -> None:
    svc.db.migrate()
    t0 = time.perf_counter()
    fill(svc.db, pulls)
    print(f"[{label}] inserted {pulls:,} pulls in {time.perf_counter() - t0:.1f} s")
    member = frozenset(f"p{p}" for p in range(10))
    for advisory in ("NARROW-1", "WIDE-1"):
        q = ExposureQuery(advisory=advisory)
        report = svc.exposure.report(q, None)
        last30 = ExposureQuery(advisory=advisory, since=time.time() - 30 * 86400)
        admin = timed(lambda q=q: svc.exposure.report(q, None))
        window = timed(lambda q=last30: svc.exposure.report(q, None))
        user = timed(lambda q=q: svc.exposure.report(q, member))
        print(
            f"[{label}] {advisory:<8} {len(report['digests']):>3} images {report['pulls']['total']:>7,} pulls: "
            f"admin {admin:7.1f} ms   last 30 days {window:7.1f} ms   10-project user {user:7.1f} ms"
        )
    t0 = time.perf_counter()
    lines = sum(chunk.count("\n") for chunk in svc.exposure.export(ExposureQuery(advisory="WIDE-1"), None, "csv"))
    print(f"[{label}] CSV export WIDE-1: {lines - 1:,} pulls in {time.perf_counter() - t0:.2f} s")


def services(url: str, tmp: str) -> Services:
    settings = Settings(
        data_dir=Path(tmp), database_url=url, vulndb_sources=[], vulndb_update_interval_seconds=0, scanner_enabled=False
    )
    return build_services(settings)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pulls", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="50,000 pulls: a smoke run")
    ap.add_argument("--postgres", help="PostgreSQL URL of a server to create a scratch database on")
    args = ap.parse_args()
    pulls = 50_000 if args.quick else args.pulls
    with tempfile.TemporaryDirectory() as tmp:
        svc = services(f"sqlite:///{tmp}/exposure.db", tmp)
        try:
            run("sqlite", svc, pulls)
        finally:
            svc.close()
        if args.postgres:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            name = f"dockyard_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.engine.make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            svc = services(url, tmp)
            try:
                run("postgres", svc, pulls)
            finally:
                svc.close()
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
