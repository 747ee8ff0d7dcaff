#!/usr/bin/env python3
"""Server time of the web UI's pages at scale: a project of 10,000 repositories, one of which holds
100,000 tags (defaults), on SQLite or, with --postgres URL (an empty database), PostgreSQL. Each page
is requested in-process (the real ASGI app, signed in as the administrator) and timed; the median of
several requests is reported in milliseconds.

    .venv/bin/python bench/bench_ui.py [--repos 10000] [--tags 100000] [--postgres URL]
    .venv/bin/python bench/bench_ui.py --quick       # 1,000 repositories, 10,000 tags
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings
from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services import pull_rollups
from dockyard.services.registry.browse import _cursor
from dockyard.wiring import build_services, prepare

PASSWORD = "bench-admin-password"
BIG = "big/huge"


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(client: TestClient, auth: tuple[str, str]) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]}}).encode()
    layer = b"bench layer"
    for blob in (config, layer):
        r = client.post(f"/v2/{BIG}/blobs/uploads/", params={"digest": _sha(blob)}, content=blob, auth=auth)
        assert r.status_code == 201, r.text
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha(config),
            "size": len(config),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha(layer), "size": len(layer)}],
    }
    body = json.dumps(manifest).encode()
    r = client.put(
        f"/v2/{BIG}/manifests/seed", content=body, headers={"Content-Type": manifest["mediaType"]}, auth=auth
    )
    assert r.status_code == 201, r.text
    return _sha(body)


def fill(db: Database, repos: int, tags: int) -> None:
    """Repositories and tags by bulk insert (a push each would take hours): every tag points at the
    one real image, which is what the pages read about."""
    with db.engine.begin() as conn:
        project_id = conn.execute(sa.select(s.projects.c.id).where(s.projects.c.name == "big")).scalar_one()
        big_id, manifest_id = conn.execute(
            sa.select(s.repositories.c.id, s.manifests.c.id).join(
                s.manifests, s.manifests.c.repository_id == s.repositories.c.id
            )
        ).one()
        now = time.time()
        batch = []
        for i in range(repos - 1):
            row = {"name": f"big/r{i:06d}", "created_at": now - i, "project_id": project_id, "used_bytes": i}
            batch.append({**row, "pushed_at": now - i})  # when its tag below was set
            if len(batch) == 5000:
                conn.execute(sa.insert(s.repositories), batch)
                batch = []
        if batch:
            conn.execute(sa.insert(s.repositories), batch)
        ids = conn.execute(sa.select(s.repositories.c.id).where(s.repositories.c.id != big_id)).scalars().all()
        rows = [
            {"repository_id": rid, "name": "v1", "manifest_id": manifest_id, "updated_at": now - k}
            for k, rid in enumerate(ids)
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(s.tags), rows[start : start + 5000])
        rows = [
            {"repository_id": big_id, "name": f"t{i:07d}", "manifest_id": manifest_id, "updated_at": now - i * 0.5}
            for i in range(tags)
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(s.tags), rows[start : start + 5000])
        # Each big tag's push in its history (the tags page's pusher column), and as many pulls of the
        # image in the audit log (its last-pull column, the exposure report's pulls).
        digest = conn.execute(sa.select(s.manifests.c.digest).where(s.manifests.c.id == manifest_id)).scalar_one()
        history = [
            {
                "project": "big",
                "repository": BIG,
                "tag": row["name"],
                "digest": digest,
                "previous_digest": None,
                "action": "moved",
                "at": row["updated_at"],
                "actor": "admin",
                "actor_kind": "user",
            }
            for row in rows
        ]
        for start in range(0, len(history), 5000):
            conn.execute(sa.insert(s.tag_history), history[start : start + 5000])
        pulls = [
            {
                "ts": now - i,
                "actor": f"user{i % 97}",
                "actor_kind": "user",
                "provider": "local",
                "source_ip": f"10.0.{i % 13}.{i % 251}",
                "user_agent": "containerd/1.7",
                "action": "pull",
                "project": "big",
                "repository": BIG,
                "reference": f"t{i % tags:07d}",
                "digest": digest,
                "result": "success",
            }
            for i in range(tags)
        ]
        for start in range(0, len(pulls), 5000):
            conn.execute(sa.insert(s.audit_events), pulls[start : start + 5000])
            pull_rollups.add(db, conn, pulls[start : start + 5000])  # as the audit log's writer does
        # What a scan would have found in the image: the exposure report's package search finds it.
        conn.execute(
            sa.insert(s.image_packages).values(
                digest=digest,
                ecosystem="deb",
                name="openssl",
                version="3.0.11-1",
                purl="pkg:deb/debian/openssl@3.0.11-1",
                path="var/lib/dpkg/status",
            )
        )


class Statements:
    """Counts the SQL statements a request sends and the time spent in them (the database's share of
    a page's server time; on PostgreSQL each is a round trip)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started: list[float] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_: object) -> None:
        self._started.append(time.perf_counter())

    def _after(self, *_: object) -> None:
        self.count += 1
        self.seconds += time.perf_counter() - self._started.pop()

    def reset(self) -> None:
        self.count, self.seconds = 0, 0.0


def timed(client: TestClient, url: str, reps: int, statements: Statements) -> tuple[float, float, int, float]:
    """Median and fastest server time of the page (ms), and the statements of its last request: count,
    ms. The fastest is worth showing beside the median on a shared VM, where other tenants' load
    (CPU steal) lengthens some requests by tens of percent."""
    times = []
    for _ in range(reps):
        statements.reset()
        t0 = time.perf_counter()
        r = client.get(url)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return statistics.median(times) * 1000, min(times) * 1000, statements.count, statements.seconds * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repos", type=int)
    ap.add_argument("--tags", type=int)
    ap.add_argument("--postgres", help="an empty PostgreSQL database's URL")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    repos = args.repos or (1_000 if args.quick else 10_000)
    tags = args.tags or (10_000 if args.quick else 100_000)
    data = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    settings = Settings(
        data_dir=data,
        database_url=args.postgres or f"sqlite:///{data}/dockyard.db",
        admin_password=PASSWORD,
        fsync=False,
        vulndb_sources=[],
        vulndb_update_interval_seconds=0,
        scanner_enabled=False,
        background_duties=False,
    )
    svc = build_services(settings)
    prepare(svc)
    engine = "postgresql" if args.postgres else "sqlite"
    with TestClient(create_app(svc), base_url="http://bench.test") as client:
        auth = ("admin", PASSWORD)
        digest = push_image(client, auth)
        t0 = time.perf_counter()
        fill(svc.db, repos, tags)
        if args.postgres:  # as autovacuum would after a bulk load: the planner needs the tables' statistics
            with svc.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))
        print(f"[{engine}] {repos:,} repositories, {tags:,} tags in {BIG}: filled in {time.perf_counter() - t0:.1f} s")
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        r = client.post(
            "/login", data={"csrf": csrf.group(1), "username": "admin", "password": PASSWORD}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        middle = _cursor(time.time() - tags * 0.25, "t")  # a deep page, as reached by following "Next"
        pages = {
            "projects": "/projects",
            "repositories (by last push)": "/projects/big",
            "repositories, page 20": "/projects/big?page=20",
            "repositories, search": "/projects/big?q=r00099",
            "tags, first page": f"/repositories/{BIG}/tags",
            "tags, deep page": f"/repositories/{BIG}/tags?after={middle}",
            "tags, search": f"/repositories/{BIG}/tags?q=t00099",
            "image": f"/repositories/{BIG}/images/{digest}",
            "project settings": "/projects/big/settings",
            "members": "/projects/big/members",
            "tag history": f"/repositories/{BIG}/tags/t0000000/history",
            "project trust": "/projects/big/trust",
            "security (quarantined, database)": "/security",
            "security, exposure (all pulls)": "/security?package=openssl",
            "audit log": "/audit",
            "administration": "/admin",
        }
        statements = Statements(svc.db.engine)
        print(f"{'page':40} {'median ms':>10} {'best ms':>8} {'statements':>11} {'in SQL ms':>10}")
        for label, url in pages.items():
            ms, best, count, sql_ms = timed(client, url, args.reps, statements)
            print(f"{label:40} {ms:10.1f} {best:8.1f} {count:11d} {sql_ms:10.1f}")


if __name__ == "__main__":
    main()
