"""Many writers at once leave a consistent state (services, on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dockyard.config import Settings
from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.wiring import build_services, prepare
from tests.support.manifests import image_manifest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_same_blob_and_same_tag_from_many_clients(tmp_path: Path, database: Database) -> None:
    svc = build_services(
        Settings(data_dir=tmp_path, database_url=database.url, admin_password="x", fsync=False), db=database
    )
    prepare(svc)
    layer = b"L" * 200_000
    config = b'{"os":"linux"}'

    def manifest(i: int) -> bytes:
        return image_manifest(config, [layer], {"n": str(i)})

    def client(i: int) -> str:
        # Half upload in one request, half chunked; then everyone moves the same tag.
        if i % 2:
            svc.uploads.monolithic("p/app", sha(layer), [layer])
        else:
            uid = svc.uploads.start("p/app")
            svc.uploads.append("p/app", uid, [layer[:1000]], 0)
            svc.uploads.finish("p/app", uid, sha(layer), [layer[1000:]], 1000)
        svc.uploads.monolithic("p/app", sha(config), [config])
        return svc.manifests.put("p/app", "latest", manifest(i), mt.OCI_MANIFEST).digest

    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(client, range(24)))

    final = svc.manifests.get("p/app", "latest")
    assert final.digest in digests
    assert final.digest == sha(final.content)
    # Every pushed manifest is stored once and reachable by digest; the blob is stored once.
    for d in set(digests):
        assert svc.manifests.get("p/app", d).digest == d
    assert svc.blobs.info("p/app", sha(layer)).size == len(layer)
    assert b"".join(svc.blobs.read(sha(layer))) == layer
    assert svc.catalog.tags("p/app").items == ["latest"]
    assert sorted(svc.store.list_digests()) == sorted({sha(layer), sha(config)})
    assert list((svc.settings.resolved_storage_path / "uploads").iterdir()) == []


def test_identical_manifest_pushed_concurrently(tmp_path: Path, database: Database) -> None:
    """Regression: two transactions inserting one manifest must not both record its references."""
    svc = build_services(
        Settings(data_dir=tmp_path, database_url=database.url, admin_password="x", fsync=False), db=database
    )
    prepare(svc)
    config, layer = b'{"os":"linux"}', b"layer-bytes"
    for blob in (config, layer):
        svc.uploads.monolithic("p/same", sha(blob), [blob])
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}
            ],
        }
    ).encode()
    with ThreadPoolExecutor(max_workers=16) as pool:
        digests = set(
            pool.map(lambda i: svc.manifests.put("p/same", f"t{i % 4}", body, mt.OCI_MANIFEST).digest, range(64))
        )
    assert digests == {sha(body)}
    assert svc.catalog.tags("p/same").items == ["t0", "t1", "t2", "t3"]
    assert svc.manifests.get("p/same", "t3").content == body


def test_new_blobs_into_one_project_from_many_clients(tmp_path: Path, database: Database) -> None:
    """Distinct blobs pushed at once into several repositories of one project: every push succeeds
    and the project's usage is their sum. (On PostgreSQL, inserting rows that reference the project
    key-share-locks its row; taking the quota lock with FOR UPDATE then deadlocked two such pushes.)"""
    svc = build_services(
        Settings(data_dir=tmp_path, database_url=database.url, admin_password="x", fsync=False), db=database
    )
    prepare(svc)
    svc.projects.create("team", creator="admin")
    blobs = [bytes([i]) * (1000 + i) for i in range(48)]

    def client(i: int) -> None:
        repo = f"team/app{i % 6}"
        if i % 2:
            svc.uploads.monolithic(repo, sha(blobs[i]), [blobs[i]])
        else:
            uid = svc.uploads.start(repo)
            svc.uploads.finish(repo, uid, sha(blobs[i]), [blobs[i]], 0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(client, range(len(blobs))))

    assert svc.projects.get("team").used_bytes == sum(len(b) for b in blobs)
