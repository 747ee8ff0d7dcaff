"""The point of online collection: safety under concurrency.

Many pushers push images that share layers, re-push the same layers, move tags and delete tags and
manifests, while the collector runs in a loop with no grace period at all (the harshest setting: an
uploaded layer is garbage the moment it lands, until a manifest claims it). A push that loses a race is
told to upload again (MANIFEST_BLOB_UNKNOWN or a refused blob commit) and does so, as clients do.
Afterwards every manifest reachable by tag or digest must pull in full with verified bytes, and once
the pushers stop, the garbage must be gone. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.oci import mediatypes as mt
from dockyard.services.errors import BlobUploadInvalid, ManifestBlobUnknown, ManifestUnknown
from dockyard.wiring import Services
from tests.lifecycle.conftest import sha256

LAYERS = [f"layer-{i}".encode() * (200 + 37 * i) for i in range(12)]  # a small pool, heavily shared
REPOS = ["team/app", "team/web", "other/app"]
RETRIES: list[int] = []  # pushes told to upload again: proof the races were actually run into


def _push(svc: Services, rnd: random.Random, repo: str, tag: str, collector_done: threading.Event) -> None:
    """Push, uploading again after each loss to the collector. With no grace period a push can lose
    any number of times in a row while the collector loops (how often is up to the scheduler), so
    it retries until the collector has stopped; then it cannot lose, and must succeed."""
    layers = rnd.sample(LAYERS, rnd.randint(1, 3))
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": rnd.randrange(5)}).encode()
    quiet_attempts = 0
    while quiet_attempts < 2:
        quiet_attempts += collector_done.is_set()
        try:
            for blob in [config, *layers]:
                digest = sha256(blob)
                try:
                    svc.blobs.info(repo, digest)  # a client skips blobs the registry says it has
                except Exception:
                    svc.uploads.monolithic(repo, digest, [blob])
            doc = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(x), "size": len(x)}
                    for x in layers
                ],
            }
            svc.manifests.put(repo, tag, json.dumps(doc).encode(), mt.OCI_MANIFEST)
            return
        except (ManifestBlobUnknown, BlobUploadInvalid):
            RETRIES.append(1)
            continue  # the collector won that race: upload again, as a client would
    raise AssertionError("push failed with no collector running")


def _worker(
    svc: Services, seed: int, stop: threading.Event, collector_done: threading.Event, errors: list[BaseException]
) -> None:
    rnd = random.Random(seed)
    try:
        while not stop.is_set():
            repo = rnd.choice(REPOS)
            tag = f"t{rnd.randrange(6)}"
            op = rnd.random()
            if op < 0.6:
                _push(svc, rnd, repo, tag, collector_done)
            elif op < 0.8:
                with contextlib.suppress(ManifestUnknown):
                    svc.manifests.delete(repo, tag)
            else:
                try:
                    digest = svc.manifests.get(repo, tag).digest
                    svc.manifests.delete(repo, digest)
                except ManifestUnknown:
                    pass
    except BaseException as exc:
        errors.append(exc)


def _collector(
    svc: Services, stop: threading.Event, done: threading.Event, errors: list[BaseException], runs: list[int]
) -> None:
    try:
        while not stop.is_set():
            report = svc.collector.run()
            runs.append(len(report.blobs) + len(report.manifests) + len(report.links))
    except BaseException as exc:
        errors.append(exc)
    finally:
        done.set()


def _verify_everything_pullable(svc: Services) -> int:
    with svc.db.read() as conn:
        rows = conn.execute(
            sa.select(s.repositories.c.name, s.manifests.c.digest).select_from(
                s.manifests.join(s.repositories, s.repositories.c.id == s.manifests.c.repository_id)
            )
        ).all()
    for repo, digest in rows:
        manifest = svc.manifests.get(repo, digest)
        doc = json.loads(manifest.content)
        for desc in [doc["config"], *doc["layers"]]:
            info = svc.blobs.info(repo, desc["digest"])
            data = b"".join(svc.blobs.read(desc["digest"]))
            assert info.size == len(data) == desc["size"]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
    return len(rows)


def test_collector_under_concurrent_pushes_deletes_and_tag_moves(svc: Services) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    runs: list[int] = []
    collector_done = threading.Event()
    threads = [threading.Thread(target=_worker, args=(svc, seed, stop, collector_done, errors)) for seed in range(6)]
    threads.append(threading.Thread(target=_collector, args=(svc, stop, collector_done, errors, runs)))
    for t in threads:
        t.start()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join()  # each stops after its current step; no deadline on a loaded machine
    assert not errors, errors
    assert sum(runs) > 0, "the collector never removed anything: the test did not exercise it"
    print(f"collector removed {sum(runs)} objects in {len(runs)} runs; pushes told to retry: {len(RETRIES)}")

    assert _verify_everything_pullable(svc) > 0
    # Quiet now: one more collection removes all garbage. What remains is exactly what is reachable.
    svc.collector.run()
    svc.collector.run()
    _verify_everything_pullable(svc)
    with svc.db.read() as conn:
        tagged = set(conn.execute(sa.select(s.tags.c.manifest_id)).scalars())
        manifests = set(conn.execute(sa.select(s.manifests.c.id)).scalars())
        referenced = set(conn.execute(sa.select(s.manifest_blobs.c.digest)).scalars())
        blob_rows = set(conn.execute(sa.select(s.blobs.c.digest)).scalars())
        links = set(conn.execute(sa.select(s.repository_blobs.c.digest)).scalars())
    assert manifests == tagged, "untagged manifests were left behind"
    assert blob_rows == referenced == links, "unreferenced blobs or links were left behind"
    on_disk = set(svc.store.list_digests())
    assert on_disk == blob_rows, "storage and database disagree"
