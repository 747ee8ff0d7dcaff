"""The outbox (services/events/outbox.py), on SQLite and PostgreSQL: written in the change's
transaction, so a rolled-back change leaves no entry; its own table, so pruning the audit log drops
no delivery; taken in order, and kept when the taker fails."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.oci import mediatypes as mt
from dockyard.services.audit import Actor, acting_as
from dockyard.services.errors import Denied
from dockyard.services.events import ChangeEvent, Listener
from dockyard.services.events.outbox import OutboxEntry
from dockyard.wiring import Services
from tests.api.conftest import services, sha256

__all__ = ["services"]  # a fixture, used by name


@pytest.fixture
def svc(services: Services) -> Services:
    return services


def image(svc: Services, repo: str, text: bytes) -> tuple[bytes, str]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "text": text.decode()}).encode()
    for blob in (config, text):
        svc.uploads.monolithic(repo, sha256(blob), [blob])
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(text), "size": len(text)}],
    }
    body = json.dumps(doc).encode()
    return body, sha256(body)


def test_manifest_and_tag_changes_are_written_in_order_blobs_and_pulls_are_not(svc: Services) -> None:
    one, one_digest = image(svc, "p/app", b"one")
    two, two_digest = image(svc, "p/app", b"two")
    with acting_as(Actor("alice", "user", source_ip="10.0.0.1")):
        svc.manifests.put("p/app", "v1", one, mt.OCI_MANIFEST)
        svc.manifests.put("p/app", "v1", two, mt.OCI_MANIFEST)
        svc.manifests.pulled("p/app", "v1", two_digest)
        svc.manifests.delete("p/app", "v1")
        svc.manifests.delete("p/app", one_digest)
    entries = svc.outbox.read()
    assert [(e.kind, e.repository, e.digest) for e in entries] == [
        ("manifest.pushed", "p/app", one_digest),
        ("manifest.pushed", "p/app", two_digest),
        ("tag.moved", "p/app", two_digest),
        ("tag.deleted", "p/app", two_digest),
        ("manifest.deleted", "p/app", one_digest),
    ]
    ids = [e.id for e in entries]
    assert ids == sorted(ids)
    moved = entries[2].payload
    assert moved == {
        "kind": "tag.moved",
        "repository": "p/app",
        "digest": two_digest,
        "tag": "v1",
        "old_digest": one_digest,
        "actor": {"name": "alice", "kind": "user"},  # where the request came from stays in the audit log
        "at": moved["at"],
    }
    assert entries[0].payload["config_digest"].startswith("sha256:")
    assert svc.outbox.read(after_id=ids[2]) == entries[3:]


def test_a_rolled_back_change_is_never_in_the_outbox(svc: Services) -> None:
    one, _ = image(svc, "p/app", b"one")
    two, _ = image(svc, "p/app", b"two")
    svc.manifests.put("p/app", "v1", one, mt.OCI_MANIFEST)
    before = svc.outbox.count()

    class FailsAfterTheOutbox(Listener):  # the outbox listener has written by the time this raises
        def changed(self, conn: Connection, event: ChangeEvent) -> None:
            assert conn.execute(sa.select(sa.func.count()).select_from(s.outbox)).scalar() == before + 1
            raise RuntimeError("later listener failed")

    svc.events.add(FailsAfterTheOutbox())
    with pytest.raises(RuntimeError):
        svc.manifests.put("p/app", "v2", two, mt.OCI_MANIFEST)
    assert svc.outbox.count() == before
    delivered: list[OutboxEntry] = []
    svc.outbox.take(lambda conn, batch: delivered.extend(batch))
    assert [e.payload.get("tag") for e in delivered] == ["v1"]


def test_a_refused_tag_move_leaves_no_entry(svc: Services) -> None:
    svc.projects.create("p", creator=None)
    one, _ = image(svc, "p/app", b"one")
    two, _ = image(svc, "p/app", b"two")
    svc.manifests.put("p/app", "v1", one, mt.OCI_MANIFEST)
    svc.tag_rules.add("p", "v*")
    before = svc.outbox.read()
    assert len(before) == 1
    with pytest.raises(Denied):
        svc.manifests.put("p/app", "v1", two, mt.OCI_MANIFEST)
    assert svc.outbox.read() == before


def test_pruning_the_audit_log_drops_no_delivery(svc: Services) -> None:
    body, digest = image(svc, "p/app", b"kept")
    svc.manifests.put("p/app", "v1", body, mt.OCI_MANIFEST)
    assert svc.audit.prune(-3600) > 0  # everything, up to an hour from now
    with svc.db.read() as conn:
        assert conn.execute(sa.select(s.audit_events)).first() is None
    assert [(e.kind, e.digest) for e in svc.outbox.read()] == [("manifest.pushed", digest)]


def test_take_hands_entries_over_in_order_and_keeps_them_when_the_taker_fails(svc: Services) -> None:
    for i in range(5):
        body, _ = image(svc, "p/app", f"image {i}".encode())
        svc.manifests.put("p/app", f"v{i}", body, mt.OCI_MANIFEST)

    def fails(conn: Connection, batch: list[OutboxEntry]) -> None:
        raise RuntimeError("delivery failed")

    with pytest.raises(RuntimeError):
        svc.outbox.take(fails, limit=2)
    assert svc.outbox.count() == 5
    taken: list[str] = []
    assert svc.outbox.take(lambda conn, batch: taken.extend(e.payload["tag"] for e in batch), limit=2) == 2
    assert svc.outbox.take(lambda conn, batch: taken.extend(e.payload["tag"] for e in batch), limit=10) == 3
    assert svc.outbox.take(lambda conn, batch: taken.append("none"), limit=10) == 0
    assert taken == ["v0", "v1", "v2", "v3", "v4"]
    assert svc.outbox.count() == 0


def test_concurrent_takers_never_take_the_same_entry(svc: Services) -> None:
    if svc.db.is_sqlite:
        pytest.skip("SQLite serialises write transactions: one taker at a time")
    for i in range(4):
        body, _ = image(svc, "p/app", f"image {i}".encode())
        svc.manifests.put("p/app", f"v{i}", body, mt.OCI_MANIFEST)
    holding, release = threading.Event(), threading.Event()
    first: list[str] = []

    def slow(conn: Connection, batch: list[OutboxEntry]) -> None:
        first.extend(e.payload["tag"] for e in batch)
        holding.set()
        assert release.wait(30)

    taker = threading.Thread(target=svc.outbox.take, args=(slow, 2))
    taker.start()
    try:
        assert holding.wait(30)
        second: list[str] = []
        assert svc.outbox.take(lambda conn, batch: second.extend(e.payload["tag"] for e in batch), limit=10) == 2
    finally:
        release.set()
        taker.join(30)
    assert (first, second) == (["v0", "v1"], ["v2", "v3"])
    assert svc.outbox.count() == 0
