"""The tag history under the collector, on SQLite and PostgreSQL: what the history records, manifests
a tag pointed at within the window are kept (deferred, not dropped), collected once the window has
passed, and a revert works after a collection."""

from __future__ import annotations

import pytest

from dockyard.services.audit import AuditFilter
from dockyard.services.errors import Conflict, Denied, ManifestUnknown, NotFound
from dockyard.services.lifecycle import collector as collector_module
from dockyard.wiring import Services
from tests.lifecycle.conftest import image

DAY = 86400.0


def entries(svc: Services, repo: str, tag: str) -> list[tuple[str, str | None, str]]:
    """(action, previous digest, digest), oldest first."""
    found, _ = svc.history.history(repo, tag, limit=1000)
    return [(e.action, e.previous_digest, e.digest) for e in reversed(found)]


def test_history_records_pushes_moves_and_deletions(svc: Services) -> None:
    a = image(svc, "team/app", [b"a" * 10], "v1")
    image(svc, "team/app", [b"a" * 10], "v1")  # the same content again: no move
    b = image(svc, "team/app", [b"b" * 10], "v1")
    svc.manifests.delete("team/app", "v1")
    c = image(svc, "team/app", [b"c" * 10], "v1")
    image(svc, "team/app", [b"c" * 10], "other")
    svc.manifests.delete("team/app", c)  # by digest: both tags go with it
    assert entries(svc, "team/app", "v1") == [
        ("moved", None, a),
        ("moved", a, b),
        ("deleted", None, b),
        ("moved", None, c),
        ("deleted", None, c),
    ]
    assert entries(svc, "team/app", "other") == [("moved", None, c), ("deleted", None, c)]
    newest, cursor = svc.history.history("team/app", "v1", limit=2)
    assert [e.digest for e in newest] == [c, c] and cursor is not None
    older, _ = svc.history.history("team/app", "v1", limit=2, before=cursor)
    assert [(e.action, e.digest) for e in older] == [("deleted", b), ("moved", b)]
    assert {e.actor for e in newest} == {"system"}  # no request: the system actor


def test_untagged_manifest_is_kept_within_the_window_and_collected_after(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.collector.history_keep = 14 * DAY
    old = image(svc, "team/app", [b"old" * 10], "v1")
    new = image(svc, "team/app", [b"new" * 10], "v1")
    never_tagged = image(svc, "team/app", [b"loose" * 10], None)

    report = svc.collector.run()
    assert report.manifests == [("team/app", never_tagged)]  # no history holds it
    assert report.deferred == 1 and svc.manifests.get("team/app", old).digest == old
    dry = svc.collector.run(dry_run=True)
    assert dry.manifests == []  # the dry run agrees

    # The revert after a collection: the held manifest is still there to point at.
    result = svc.history.revert("team/app", "v1", old, None)
    assert result.changed and result.previous_digest == new
    assert svc.manifests.get("team/app", "v1").digest == old
    svc.collector.run()
    assert svc.manifests.get("team/app", new).digest == new  # now the one held by the history

    # 15 days later the hold is over: the manifest the tag left goes, the tagged one stays.
    later = collector_module.now() + 15 * DAY
    monkeypatch.setattr(collector_module, "now", lambda: later)
    assert svc.collector.run(dry_run=True).manifests == [("team/app", new)]
    report = svc.collector.run()
    assert report.manifests == [("team/app", new)]
    with pytest.raises(ManifestUnknown):
        svc.manifests.get("team/app", new)
    assert svc.manifests.get("team/app", "v1").digest == old
    with pytest.raises(Conflict, match="no longer stored"):  # in the history, but collected
        svc.history.revert("team/app", "v1", new, None)


def test_no_window_no_hold(svc: Services) -> None:
    svc.collector.history_keep = 0.0
    old = image(svc, "team/app", [b"old" * 10], "v1")
    image(svc, "team/app", [b"new" * 10], "v1")
    assert svc.collector.run().manifests == [("team/app", old)]


def test_revert_rules(svc: Services) -> None:
    svc.projects.create("team", public=False, creator="admin")
    a = image(svc, "team/app", [b"a" * 10], "v1")
    b = image(svc, "team/app", [b"b" * 10], "v1")
    elsewhere = image(svc, "team/app", [b"x" * 10], "x")
    with pytest.raises(NotFound, match="not in the history"):
        svc.history.revert("team/app", "v1", elsewhere, None)
    assert svc.manifests.get("team/app", "v1").digest == b
    unchanged = svc.history.revert("team/app", "v1", b, None)
    assert not unchanged.changed
    # A deleted tag comes back.
    svc.manifests.delete("team/app", "v1")
    back = svc.history.revert("team/app", "v1", a, None)
    assert back.changed and back.previous_digest is None and svc.manifests.get("team/app", "v1").digest == a
    assert entries(svc, "team/app", "v1")[-1] == ("moved", None, a)
    # Immutable now: no revert moves it.
    svc.tag_rules.add("team", "v*")
    with pytest.raises(Denied, match="immutable"):
        svc.history.revert("team/app", "v1", b, None)
    assert svc.manifests.get("team/app", "v1").digest == a
    revert_events = svc.audit.query(AuditFilter(action="tag.revert"))[0]
    assert [(e["reference"], e["digest"]) for e in revert_events] == [("v1", a)]


def test_a_tag_older_than_the_history(svc: Services) -> None:
    """A tag set before the history was kept (here: by a service with no listeners): its first move
    still records where it came from, and the tag can be reverted there."""
    import json

    from dockyard.oci import mediatypes as mt
    from dockyard.services.registry import ManifestService
    from tests.lifecycle.conftest import push_blob, sha256

    config = json.dumps({"os": "linux", "old": True}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": push_blob(svc, "team/app", config), "size": len(config)},
        "layers": [],
    }
    body = json.dumps(doc).encode()
    ManifestService(svc.db, grace=0).put("team/app", "v1", body, mt.OCI_MANIFEST)
    old = sha256(body)
    assert entries(svc, "team/app", "v1") == []
    new = image(svc, "team/app", [b"new" * 10], "v1")
    assert entries(svc, "team/app", "v1") == [("moved", old, new)]
    assert svc.history.revert("team/app", "v1", old, None).changed
    assert entries(svc, "team/app", "v1") == [("moved", old, new), ("moved", new, old)]
