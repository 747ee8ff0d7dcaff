"""Registry events (services/events), on SQLite and PostgreSQL: each change is told once, with the
right fields, to every listener inside the change's transaction; a listener that raises rolls the
change back; pulls are told after the read, with no transaction."""

from __future__ import annotations

import json
from typing import TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.oci import mediatypes as mt
from dockyard.services.audit import Actor, AuditFilter, acting_as
from dockyard.services.errors import ManifestUnknown
from dockyard.services.events import (
    BlobDeleted,
    BlobMounted,
    BlobPushed,
    ChangeEvent,
    Listener,
    ManifestDeleted,
    ManifestPulled,
    ManifestPushed,
    RegistryEvent,
    TagDeleted,
    TagMoved,
)
from dockyard.wiring import Services
from tests.lifecycle.conftest import push_blob, sha256, svc  # svc: services with no grace period

__all__ = ["svc"]  # a fixture, used by name

ALICE = Actor("alice", "user")
E = TypeVar("E", bound=RegistryEvent)


class Recorder(Listener):
    """Keeps every event, and checks a change's own rows are visible on the connection it is given."""

    def __init__(self) -> None:
        self.events: list[RegistryEvent] = []
        self.open_transaction: list[bool] = []

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        self.open_transaction.append(conn.in_transaction())
        if isinstance(event, ManifestPushed):  # the manifest is there, in this same transaction
            m = s.manifests.c
            assert conn.execute(sa.select(m.id).where(m.digest == event.digest)).first() is not None
        self.events.append(event)

    def pulled(self, event: ManifestPulled) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


class Refuses(Listener):
    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        raise RuntimeError("refused by a listener")


@pytest.fixture
def rec(svc: Services) -> Recorder:
    recorder = Recorder()
    svc.events.add(recorder)
    return recorder


def manifest(svc: Services, repo: str, layer: bytes) -> tuple[bytes, str, str]:
    """An image manifest whose blobs are pushed: (body, its digest, the config digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "layer": layer.decode()}).encode()
    config_digest = push_blob(svc, repo, config)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": push_blob(svc, repo, layer),
                "size": len(layer),
            }
        ],
    }
    body = json.dumps(doc).encode()
    return body, sha256(body), config_digest


def test_a_push_tells_each_blob_and_the_manifest_once_with_their_fields(svc: Services, rec: Recorder) -> None:
    with acting_as(ALICE):
        body, digest, config_digest = manifest(svc, "p/app", b"layer-1")
        svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    assert [(e.repository, e.digest, e.actor) for e in rec.of(BlobPushed)] == [
        ("p/app", config_digest, ALICE),
        ("p/app", sha256(b"layer-1"), ALICE),
    ]
    assert rec.of(BlobPushed)[1].size == len(b"layer-1")
    (pushed,) = rec.of(ManifestPushed)
    assert pushed == ManifestPushed(
        repository="p/app",
        digest=digest,
        tag="v1",
        media_type=mt.OCI_MANIFEST,
        size=len(body),
        config_digest=config_digest,
        children=(),
        subject=None,
        actor=ALICE,
        at=pushed.at,
    )
    assert rec.of(TagMoved) == [] and len(rec.events) == 3
    assert all(rec.open_transaction)


def test_moving_a_tag_tells_the_old_digest(svc: Services, rec: Recorder) -> None:
    first, first_digest, _ = manifest(svc, "p/app", b"one")
    second, second_digest, _ = manifest(svc, "p/app", b"two")
    svc.manifests.put("p/app", "latest", first, mt.OCI_MANIFEST)
    svc.manifests.put("p/app", "latest", first, mt.OCI_MANIFEST)  # the same manifest again: no move
    assert rec.of(TagMoved) == []
    svc.manifests.put("p/app", "latest", second, mt.OCI_MANIFEST)
    (moved,) = rec.of(TagMoved)
    assert (moved.repository, moved.tag, moved.digest, moved.old_digest) == (
        "p/app",
        "latest",
        second_digest,
        first_digest,
    )
    assert len(rec.of(ManifestPushed)) == 3


def test_a_pull_is_told_after_the_read_and_audited_buffered(
    svc: Services, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, digest, _ = manifest(svc, "p/app", b"pulled")
    svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    writes: list[object] = []
    real_write = svc.db.write
    monkeypatch.setattr(svc.db, "write", lambda *a, **k: writes.append(a) or real_write(*a, **k))
    with acting_as(ALICE):
        svc.manifests.pulled("p/app", "v1", digest)
        svc.manifests.pulled("p/app", digest, digest)
    assert writes == []  # no write transaction on the pull path: the audit log buffers
    monkeypatch.undo()
    assert [(e.tag, e.digest, e.actor) for e in rec.of(ManifestPulled)] == [
        ("v1", digest, ALICE),
        (None, digest, ALICE),
    ]
    rows, _ = svc.audit.query(AuditFilter(action="pull"))  # flushes
    assert sorted((r["actor"], r["reference"] or "", r["digest"]) for r in rows) == [
        ("alice", "", digest),
        ("alice", "v1", digest),
    ]


def test_deletes_by_tag_and_by_digest(svc: Services, rec: Recorder) -> None:
    body, digest, _ = manifest(svc, "p/app", b"deleted")
    svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    svc.manifests.put("p/app", "v2", body, mt.OCI_MANIFEST)
    svc.manifests.put("p/app", "v3", body, mt.OCI_MANIFEST)
    with acting_as(ALICE):
        svc.manifests.delete("p/app", "v3")
        svc.manifests.delete("p/app", digest)
    (untagged,) = rec.of(TagDeleted)
    assert (untagged.repository, untagged.tag, untagged.digest, untagged.actor) == (
        "p/app",
        "v3",
        digest,
        ALICE,
    )
    (deleted,) = rec.of(ManifestDeleted)
    assert deleted == ManifestDeleted(
        repository="p/app", digest=digest, tags=("v1", "v2"), collected=False, actor=ALICE, at=deleted.at
    )
    with pytest.raises(ManifestUnknown):  # nothing happened: nothing told
        svc.manifests.delete("p/app", digest)
    assert len(rec.of(ManifestDeleted)) == 1


def test_blob_mount_and_delete(svc: Services, rec: Recorder) -> None:
    digest = push_blob(svc, "p/src", b"shared layer")
    with acting_as(ALICE):
        assert svc.blobs.mount("p/dst", digest, "p/src") == 12
        svc.blobs.delete("p/dst", digest)
    assert rec.of(BlobMounted) == [
        BlobMounted(repository="p/dst", digest=digest, size=12, source="p/src", actor=ALICE, at=rec.events[1].at)
    ]
    assert rec.of(BlobDeleted) == [BlobDeleted(repository="p/dst", digest=digest, actor=ALICE, at=rec.events[2].at)]
    assert svc.blobs.mount("p/dst", sha256(b"nowhere"), "p/src") is None  # no mount: nothing told
    assert len(rec.events) == 3


def test_the_collector_tells_what_it_removes(svc: Services, rec: Recorder) -> None:
    body, digest, config_digest = manifest(svc, "p/app", b"garbage")
    svc.manifests.put("p/app", digest, body, mt.OCI_MANIFEST)  # by digest, untagged: garbage at once
    rec.events.clear()
    svc.collector.run()
    (gone,) = rec.of(ManifestDeleted)
    assert (gone.repository, gone.digest, gone.collected) == ("p/app", digest, True)
    assert gone.actor.name == "system:gc"
    links = rec.of(BlobDeleted)
    assert sorted(e.digest for e in links) == sorted([config_digest, sha256(b"garbage")])
    assert all(e.collected for e in links)
    with svc.db.read() as conn:  # and the collector's queue got the blobs from the listener
        assert conn.execute(sa.select(s.blobs.c.digest)).first() is None


def test_a_listener_that_raises_rolls_the_change_back(svc: Services) -> None:
    body, _, _ = manifest(svc, "p/app", b"refused")
    svc.events.add(Refuses())
    with pytest.raises(RuntimeError, match="refused by a listener"):
        svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    with pytest.raises(RuntimeError):
        svc.blobs.mount("p/other", sha256(b"refused"), "p/app")
    with svc.db.read() as conn:
        assert conn.execute(sa.select(s.manifests)).first() is None
        assert conn.execute(sa.select(s.tags)).first() is None
        assert conn.execute(sa.select(s.image_scans)).first() is None  # the scan queued with it went too
        audit = s.audit_events.c
        assert conn.execute(sa.select(audit.id).where(audit.action == "push")).first() is None
        assert conn.execute(sa.select(s.outbox)).first() is None
        repos = conn.execute(sa.select(s.repositories.c.name)).scalars().all()
        assert "p/other" not in repos


def test_scanning_listener_queues_images_and_forgets_the_last_copy(svc: Services) -> None:
    body, digest, _ = manifest(svc, "p/app", b"scanned")
    assert manifest(svc, "p/copy", b"scanned")[1] == digest
    svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    svc.manifests.put("p/copy", "v1", body, mt.OCI_MANIFEST)

    def scan_status() -> str | None:
        with svc.db.read() as conn:
            return conn.execute(sa.select(s.image_scans.c.status).where(s.image_scans.c.digest == digest)).scalar()

    assert scan_status() == "queued"
    svc.manifests.delete("p/app", digest)
    assert scan_status() == "queued"  # another copy is stored: its results still describe it
    svc.manifests.delete("p/copy", digest)
    assert scan_status() is None


def test_the_audit_log_answers_retention_s_pull_history(svc: Services) -> None:
    body, digest, _ = manifest(svc, "p/app", b"history")
    svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    svc.manifests.pulled("p/app", "v1", digest)
    svc.manifests.pulled("p/app", digest, digest)  # by digest: no tag to keep
    svc.manifests.pulled("p/other", "v1", digest)
    svc.audit.flush()
    with svc.db.read() as conn:
        pulls = svc.audit.last_pulls(conn, "p/app", since=0)
        assert list(pulls) == ["v1"]
        assert svc.audit.last_pulls(conn, "p/app", since=pulls["v1"] + 1) == {}
