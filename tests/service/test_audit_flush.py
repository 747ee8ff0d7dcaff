"""A flush returns only once every event queued before it is committed, even while the background
thread is writing rows it took (retention reads pulls right after flushing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.audit import AuditLog


def _pulls(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(s.audit_events)).scalar_one())


def test_a_flush_waits_for_the_background_write_of_rows_already_taken(database: Database) -> None:
    audit = AuditLog(database, flush_interval=3600)
    audit.record_access("pull", repository="team/app", reference="v1", digest="sha256:" + "a" * 64)
    writing, release = threading.Event(), threading.Event()
    real_write = database.write

    @contextmanager
    def slow_write(*args: Any, **kwargs: Any) -> Iterator[sa.Connection]:
        with real_write(*args, **kwargs) as conn:
            yield conn
            if threading.current_thread().name == "background":  # taken rows inserted, not committed
                writing.set()
                assert release.wait(30)

    database.write = slow_write  # type: ignore[method-assign]
    background = threading.Thread(target=audit.flush, name="background")
    background.start()
    assert writing.wait(30)
    caller_done = threading.Event()
    caller = threading.Thread(target=lambda: (audit.flush(), caller_done.set()))
    caller.start()
    # The caller's flush found nothing to take; it must still not return while the rows are uncommitted.
    assert not caller_done.wait(0.5)
    release.set()
    background.join(30)
    caller.join(30)
    assert caller_done.is_set()
    database.write = real_write  # type: ignore[method-assign]
    assert _pulls(database) == 1
    audit.close()
