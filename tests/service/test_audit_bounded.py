"""The pull-event buffer is bounded and drops nothing: while the database refuses writes, events
queue up to `max_pending`; past that the caller gets the database's error (its event is not queued,
and it knows), and once the database is back every queued event is written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.audit import AuditLog


class Refused(Exception):
    pass


def _rows(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return sorted(conn.execute(sa.select(s.audit_events.c.reference)).scalars())


def test_a_refusing_database_bounds_the_buffer_without_losing_an_event(database: Database) -> None:
    audit = AuditLog(database, flush_interval=3600, max_buffer=5, max_pending=12)
    real_write = database.write

    @contextmanager
    def refused(*args: Any, **kwargs: Any) -> Iterator[sa.Connection]:
        raise Refused("database unavailable")
        yield  # pragma: no cover

    database.write = refused  # type: ignore[method-assign]
    try:
        for i in range(12):  # queued, though every batch write fails
            audit.record_access("pull", repository="team/app", reference=f"t{i:02d}")
        assert audit.pending() == 12
        with pytest.raises(Refused):
            audit.record_access("pull", repository="team/app", reference="refused")
        assert audit.pending() == 12  # not queued: its caller was told
    finally:
        database.write = real_write  # type: ignore[method-assign]
    audit.record_access("pull", repository="team/app", reference="after")
    audit.flush()
    assert _rows(database) == sorted([f"t{i:02d}" for i in range(12)] + ["after"])
    assert audit.pending() == 0
    audit.close()
