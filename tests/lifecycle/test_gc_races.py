"""Deterministic replays of the tightest race: the collector removing a blob's bytes while an upload
of the same blob is between moving its bytes into place and recording them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.errors import BlobUploadInvalid
from dockyard.storage.base import UploadState
from dockyard.storage.filesystem import FilesystemBlobStore
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import make_settings
from tests.lifecycle.conftest import image, push_blob, sha256


class HookedStore(FilesystemBlobStore):
    """The real filesystem store, with a hook that runs right after an upload's bytes are in place."""

    after_commit: Callable[[str], None] | None = None

    def commit_upload(self, upload_id: str, state: UploadState, digest: str) -> int:
        size = super().commit_upload(upload_id, state, digest)
        if self.after_commit is not None:
            hook, self.after_commit = self.after_commit, None
            hook(digest)
        return size


@pytest.fixture
def hooked(tmp_path: Path, database: Database) -> Iterator[tuple[Services, HookedStore]]:
    settings = make_settings(tmp_path, database).model_copy(
        update={"gc_grace_seconds": 0.0, "tag_history_keep_days": 0.0}
    )
    store = HookedStore(settings.resolved_storage_path, fsync=False)
    svc = build_services(settings, store=store, db=database)
    prepare(svc)
    yield svc, store


def test_upload_that_loses_the_race_is_told_to_upload_again(hooked: tuple[Services, HookedStore]) -> None:
    svc, store = hooked
    data = b"contested layer" * 100
    digest = push_blob(svc, "team/a", data)  # linked, unreferenced: garbage as soon as it is looked at
    # Another repository uploads the same bytes; the collector runs in the gap between the move into
    # place and the database record, and removes the blob (bytes and row) in that gap.
    store.after_commit = lambda _digest: svc.collector.run()
    with pytest.raises(BlobUploadInvalid, match="upload the blob again"):
        svc.uploads.monolithic("team/b", digest, [data])
    # Nothing claims to have the blob: a client asking is told to upload, and that upload works.
    assert svc.store.stat(digest) is None
    assert push_blob(svc, "team/b", data) == digest
    assert b"".join(svc.blobs.read(digest)) == data and svc.blobs.info("team/b", digest).size == len(data)


def test_upload_that_wins_takes_the_marked_blob_back(hooked: tuple[Services, HookedStore]) -> None:
    svc, _store = hooked
    data = b"rescued layer" * 100
    digest = sha256(data)
    push_blob(svc, "team/a", data)
    svc.blobs.delete("team/a", digest)  # no link anywhere now: the next collection removes it
    # Mark it (phase 1 only), as a collector that has just decided would have.
    with svc.db.write() as conn:
        conn.exec_driver_sql("UPDATE blobs SET status = 'deleting'")
    image(svc, "team/b", [data], "v1")  # the push uploads it again and takes it back …
    report = svc.collector.run()  # … so the collector's phase 2 leaves it alone
    assert digest not in report.blobs
    assert b"".join(svc.blobs.read(digest)) == data and svc.blobs.info("team/b", digest).size == len(data)


def test_push_whose_new_tag_is_deleted_in_its_gap_still_tags_its_manifest(svc: Services) -> None:
    """The GC stress flake on PostgreSQL, replayed: a push finds tag `t` absent, another push creates
    it, so the first one's INSERT does nothing, and a tag delete removes it before the first one looks
    again. That push used to find no tag, update nothing and commit a new, untagged manifest that no
    queue entry named: left behind by every collection. The push must end with the tag it reported."""
    if svc.db.is_sqlite:
        pytest.skip("SQLite serialises write transactions: there is no gap to run the others in")
    push_blob(svc, "team/a", b"the repository exists: creating it would make the others wait for us")
    interleaved: list[str] = []
    ours: list[Any] = []  # the racing push's connection (the others' statements pass through too)

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not interleaved and statement.startswith("INSERT INTO tags"):
            interleaved.append("create")
            ours.append(conn)
            # Commits tag t first. Its own blobs: we share-lock ours until we commit.
            image(svc, "team/a", [b"other image"], "t", config=b'{"other": true}')

    def after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if interleaved == ["create"] and conn is ours[0] and statement.startswith("INSERT INTO tags"):
            interleaved.append("delete")
            svc.manifests.delete("team/a", "t")  # our INSERT did nothing and locked nothing

    sa.event.listen(svc.db.engine, "before_cursor_execute", before)
    sa.event.listen(svc.db.engine, "after_cursor_execute", after)
    try:
        pushed = image(svc, "team/a", [b"racing image"], "t")
    finally:
        sa.event.remove(svc.db.engine, "before_cursor_execute", before)
        sa.event.remove(svc.db.engine, "after_cursor_execute", after)
    assert interleaved == ["create", "delete"], "the interleaving did not happen: the test proves nothing"
    assert svc.manifests.get("team/a", "t").digest == pushed
    svc.collector.run()
    with svc.db.read() as conn:
        manifests = set(conn.execute(sa.select(s.manifests.c.id)).scalars())
        tagged = set(conn.execute(sa.select(s.tags.c.manifest_id)).scalars())
    assert manifests == tagged, "an untagged manifest outlived the collection"
