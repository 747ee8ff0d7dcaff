"""Create-if-missing under 16 concurrent creators (services, on SQLite and PostgreSQL): a repository,
a blob row and a tag each come into being once, and every creator succeeds.

On PostgreSQL each creator is held just before its INSERT until all 16 have found the row missing
(transactions open at once; a creator that found the row would never reach the INSERT, so this
needs nobody to commit first, which the hold ensures). Then all 16 insert together: without ON
CONFLICT DO NOTHING and a re-read, 15 of them fail with UniqueViolation (a 500) every time. SQLite
write transactions are serial (BEGIN IMMEDIATE), so there the creators simply run at once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings
from tests.support.manifests import image_manifest

CREATORS = 16
WAIT = 120  # a safety net against a hang; the barrier is the synchronisation


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def svc(tmp_path: Path, database: Database) -> Iterator[Services]:
    services = build_services(make_settings(tmp_path, database), db=database)
    prepare(services)
    yield services


def hold_inserts_into(monkeypatch: pytest.MonkeyPatch, db: Database, table: sa.Table) -> None:
    """On PostgreSQL, make every creator wait before its INSERT into `table` until all have arrived."""
    if db.is_sqlite:
        return
    barrier = threading.Barrier(CREATORS)
    real = db.insert_ignore

    def insert_ignore(t: sa.Table, **values: Any) -> Any:
        if t is table:
            barrier.wait(WAIT)
        return real(t, **values)

    monkeypatch.setattr(db, "insert_ignore", insert_ignore)


def all_at_once(creator: Callable[[int], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=CREATORS) as pool:
        return list(pool.map(creator, range(CREATORS)))


def count(db: Database, table: sa.Table, *where: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)


def test_one_repository_from_16_concurrent_creators(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    hold_inserts_into(monkeypatch, svc.db, s.repositories)
    all_at_once(lambda i: svc.uploads.start("p/new-repo", f"user{i}"))
    assert count(svc.db, s.repositories, s.repositories.c.name == "p/new-repo") == 1
    assert count(svc.db, s.upload_sessions) == CREATORS


def test_one_blob_row_from_16_concurrent_creators(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.projects.create("team", creator="admin")
    for i in range(CREATORS):  # the repositories exist: this is about the blob's rows
        svc.uploads.cancel(f"team/app{i}", svc.uploads.start(f"team/app{i}"))
    layer = b"the same layer" * 1000
    hold_inserts_into(monkeypatch, svc.db, s.blobs)
    sizes = all_at_once(lambda i: svc.uploads.monolithic(f"team/app{i}", sha(layer), [layer]))
    assert sizes == [len(layer)] * CREATORS
    assert count(svc.db, s.blobs, s.blobs.c.digest == sha(layer)) == 1
    assert count(svc.db, s.repository_blobs, s.repository_blobs.c.digest == sha(layer)) == CREATORS
    assert svc.projects.get("team").used_bytes == len(layer)  # one blob, counted once
    assert b"".join(svc.store.open_range(sha(layer))) == layer


def test_one_tag_from_16_concurrent_creators(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    config, layer = b'{"os":"linux"}', b"layer"
    for blob in (config, layer):
        svc.uploads.monolithic("p/app", sha(blob), [blob])

    def manifest(i: int) -> bytes:
        return image_manifest(config, [layer], {"creator": str(i)})  # distinct manifests, one new tag

    hold_inserts_into(monkeypatch, svc.db, s.tags)
    digests = all_at_once(lambda i: svc.manifests.put("p/app", "new-tag", manifest(i), mt.OCI_MANIFEST).digest)
    assert len(set(digests)) == CREATORS
    assert count(svc.db, s.tags, s.tags.c.name == "new-tag") == 1
    assert svc.catalog.tags("p/app").items == ["new-tag"]
    assert svc.manifests.get("p/app", "new-tag").digest in digests
