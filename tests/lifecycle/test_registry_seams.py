"""The registry owns its tables (issue 12): the lifecycle services read them through the registry's
services, and the registry's garbage-collection bookkeeping is part of its services, so a service
or collector built without listeners still queues (and collects) what its changes make garbage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dockyard.services.lifecycle import reconcile, retention, scrub
from dockyard.services.lifecycle.collector import GarbageCollector
from dockyard.services.registry import BlobService, CatalogService, ManifestService
from dockyard.services.registry.blobs import StoredBlob
from dockyard.wiring import Services
from tests.lifecycle.conftest import image, index, push_blob, sbom_referrer, sha256, svc

__all__ = ["svc"]  # a fixture, used by name

REGISTRY_TABLES = {
    "repositories", "blobs", "repository_blobs", "manifests", "manifest_blobs", "manifest_children", "tags",
    "upload_sessions",
}  # fmt: skip


@pytest.mark.parametrize("module", [retention, scrub, reconcile], ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_lifecycle_services_do_not_reach_into_the_registry_tables(module: object) -> None:
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "s"
    }
    assert used & REGISTRY_TABLES == set()


def test_a_manifest_service_built_without_listeners_queues_its_garbage(svc: Services) -> None:
    digest = image(svc, "team/app", [b"layer"], "v1")
    ManifestService(svc.db, grace=0).delete("team/app", "v1")  # no listeners given
    assert svc.collector.run().manifests == [("team/app", digest)]


def test_a_blob_service_built_without_listeners_queues_the_unlinked_blob(svc: Services) -> None:
    digest = push_blob(svc, "team/app", b"lonely")
    BlobService(svc.db, svc.store, grace=0).delete("team/app", digest)
    assert svc.collector.run().blobs == [digest] and svc.store.stat(digest) is None


def test_a_collector_built_without_listeners_collects_the_blobs_of_the_links_it_removes(svc: Services) -> None:
    image(svc, "team/app", [b"layer"], "v1")
    svc.manifests.delete("team/app", "v1")
    bare = GarbageCollector(svc.db, svc.store, svc.audit, grace=0, pace=1.0)  # no listeners given
    report = bare.run()
    assert len(report.manifests) == 1 and len(report.links) == 2
    assert sorted(report.blobs) == sorted(d for _, d in report.links) and svc.store.stat(sha256(b"layer")) is None


def test_catalog_reads_for_retention(svc: Services) -> None:
    old = image(svc, "team/app", [b"a"], "old")
    new = image(svc, "team/app", [b"b"], "new")
    untagged = image(svc, "team/app", [b"c"], None)
    child = image(svc, "team/app", [b"d"], None)
    index(svc, "team/app", child, "multi")
    sbom_referrer(svc, "team/app", old)  # kept with its subject
    image(svc, "team2/app", [b"e"], "other")
    with svc.db.read() as conn:
        repos = CatalogService.project_repositories(conn, "team")
        assert [name for _, name in repos] == ["team/app"]
        tags = CatalogService.tags_by_recency(conn, repos[0][0])
        assert [(t.name, t.digest) for t in tags][1:] == [("new", new), ("old", old)]  # "multi" is newest
        assert CatalogService.unheld_manifests(conn, repos[0][0]) == [untagged]


def test_blob_service_walks_stored_blobs_in_batches_and_deletes_only_unrecorded_bytes(svc: Services) -> None:
    digests = sorted(push_blob(svc, "team/app", bytes([i]) * 10) for i in range(5))
    batches = list(svc.blobs.stored(batch=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [b for batch in batches for b in batch] == [StoredBlob(d, 10) for d in digests]
    assert svc.blobs.recorded(digests[0]) and not svc.blobs.delete_unrecorded(digests[0])
    assert svc.store.stat(digests[0]) == 10  # a recorded blob's bytes stay
    orphan = b"no row records me"
    svc.store.put(sha256(orphan), [orphan])
    assert not svc.blobs.recorded(sha256(orphan)) and svc.blobs.delete_unrecorded(sha256(orphan))
    assert svc.store.stat(sha256(orphan)) is None
