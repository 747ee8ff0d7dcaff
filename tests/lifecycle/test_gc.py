"""What the collector removes and what it keeps, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.errors import BlobUnknown, ManifestUnknown
from dockyard.wiring import Services
from tests.lifecycle.conftest import image, index, push_blob, sbom_referrer, sha256


def stored(svc: Services, digest: str) -> bool:
    return svc.store.stat(digest) is not None


def blob_rows(svc: Services) -> set[str]:
    with svc.db.read() as conn:
        return set(conn.execute(sa.select(s.blobs.c.digest)).scalars())


def test_deleting_a_tag_collects_the_image_but_not_shared_layers(svc: Services) -> None:
    shared, own = b"shared-layer" * 100, b"own-layer" * 100
    keep = image(svc, "team/a", [shared], "keep")
    gone = image(svc, "team/a", [shared, own], "gone")
    svc.manifests.delete("team/a", "gone")
    dry = svc.collector.run(dry_run=True)
    assert dry.manifests == [("team/a", gone)] and sha256(own) in dry.blobs and sha256(shared) not in dry.blobs
    assert stored(svc, sha256(own)) and svc.manifests.get("team/a", gone)  # the dry run changed nothing
    report = svc.collector.run()
    assert report.as_dict() == dry.as_dict()
    assert report.bytes == len(own) + len(json.dumps({"architecture": "amd64", "os": "linux", "layers": 2}))
    with pytest.raises(ManifestUnknown):
        svc.manifests.get("team/a", gone)
    assert not stored(svc, sha256(own)) and stored(svc, sha256(shared))
    assert svc.manifests.get("team/a", "keep").digest == keep
    assert svc.collector.pending() == 0


def test_blob_shared_across_repositories_is_kept_while_either_uses_it(svc: Services) -> None:
    layer = b"common" * 1000
    image(svc, "team/a", [layer], "v1")
    image(svc, "other/b", [layer], "v1")
    svc.manifests.delete("team/a", "v1")
    svc.collector.run()
    assert stored(svc, sha256(layer))
    with pytest.raises(BlobUnknown):
        svc.blobs.info("team/a", sha256(layer))  # unlinked from a, still in b
    assert svc.blobs.info("other/b", sha256(layer)).size == len(layer)
    svc.manifests.delete("other/b", "v1")
    svc.collector.run()
    assert not stored(svc, sha256(layer)) and sha256(layer) not in blob_rows(svc)


def test_uploaded_layers_without_a_manifest_are_garbage_after_the_grace_period(svc: Services) -> None:
    digest = push_blob(svc, "team/a", b"orphan" * 50)
    svc.collector.grace = 3600
    report = svc.collector.run()
    assert report.deferred == 1 and stored(svc, digest)
    svc.collector.grace = 0
    with svc.db.write() as conn:  # the deferral moved its due time an hour ahead
        conn.execute(sa.update(s.gc_queue).values(due_at=0))
    report = svc.collector.run()
    assert report.blobs == [digest] and not stored(svc, digest)


def test_index_children_and_referrers_live_as_long_as_what_holds_them(svc: Services) -> None:
    child = image(svc, "team/multi", [b"amd64-layer"], None)
    index_digest = index(svc, "team/multi", child, "latest")
    referrer = sbom_referrer(svc, "team/multi", child)
    report = svc.collector.run()
    assert report.manifests == [] and report.blobs == []
    svc.manifests.delete("team/multi", "latest")
    report = svc.collector.run()
    assert {d for _, d in report.manifests} == {index_digest, child, referrer}
    assert not stored(svc, sha256(b"sbom")) and not stored(svc, sha256(b"amd64-layer"))


def test_tag_move_leaves_the_old_manifest_to_the_collector(svc: Services) -> None:
    old = image(svc, "team/a", [b"v1"], "latest")
    new = image(svc, "team/a", [b"v2"], "latest")
    report = svc.collector.run()
    assert [d for _, d in report.manifests] == [old]
    assert svc.manifests.get("team/a", "latest").digest == new
    assert stored(svc, sha256(b"v2")) and not stored(svc, sha256(b"v1"))


def test_usage_follows_pushes_and_collection(svc: Services) -> None:
    svc.projects.create("team", creator="admin")
    a, b = b"a" * 1000, b"b" * 3000
    image(svc, "team/x", [a, b], "v1", config=b"{}")
    image(svc, "team/y", [a], "v1", config=b"{}")
    with svc.db.read() as conn:
        used = dict(conn.execute(sa.select(s.repositories.c.name, s.repositories.c.used_bytes)).all())
        project = conn.execute(sa.select(s.projects.c.used_bytes).where(s.projects.c.name == "team")).scalar()
    assert used == {"team/x": 4002, "team/y": 1002}
    assert project == 4002  # a and the config count once in the project
    svc.manifests.delete("team/x", "v1")
    svc.collector.run()
    with svc.db.read() as conn:
        used = dict(conn.execute(sa.select(s.repositories.c.name, s.repositories.c.used_bytes)).all())
        project = conn.execute(sa.select(s.projects.c.used_bytes).where(s.projects.c.name == "team")).scalar()
    assert used == {"team/x": 0, "team/y": 1002} and project == 1002
