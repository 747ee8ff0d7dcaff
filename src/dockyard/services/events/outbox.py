"""The outbox: registry events that leave the process (webhooks, replication), stored durably.

An `OutboxListener` writes one row per event in the transaction of the change, so an entry exists
exactly when its change committed: a rolled-back push leaves none, and a consumer that finds an
entry can rely on the change. It is its own table, not derived from the audit log, so pruning the
audit log never drops a delivery. Consumers take entries with `Outbox.take`, which hands a batch to
a handler in one transaction and deletes the batch with it (the handler turns entries into work,
for instance work-queue items, in that same transaction). Which events go, and why pulls do not,
is written down in docs/architecture.md ("Registry events").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.events.listener import Listener
from dockyard.services.events.model import (
    ChangeEvent,
    ImageQuarantined,
    ImageReleased,
    ManifestDeleted,
    ManifestPushed,
    TagDeleted,
    TagMoved,
)

# What webhooks and replication act on. Blob events stay in the process: replication copies the
# blobs a manifest references, and a row per layer would only fill the table. Quarantine and release
# go out for webhooks (a security team's alerting).
OUTBOX_EVENTS: frozenset[type[ChangeEvent]] = frozenset(
    {ManifestPushed, ManifestDeleted, TagMoved, TagDeleted, ImageQuarantined, ImageReleased}
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    kind: str
    repository: str
    digest: str
    payload: dict[str, Any]
    created_at: float


def payload(event: ChangeEvent) -> dict[str, Any]:
    """The event as JSON-ready data. The actor is its name and kind only: where a request came from
    (address, user agent) stays in the audit log and does not leave the registry."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "actor"}
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    return {"kind": event.kind, **data, "actor": {"name": event.actor.name, "kind": event.actor.kind}}


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, conn: Connection, event: ChangeEvent) -> None:
        """Add an entry in the caller's transaction."""
        conn.execute(
            sa.insert(s.outbox).values(
                kind=event.kind,
                repository=event.repository,
                digest=event.digest,
                payload=json.dumps(payload(event), sort_keys=True),
                created_at=event.at,
            )
        )

    @staticmethod
    def _entry(row: Any) -> OutboxEntry:
        return OutboxEntry(
            int(row.id), str(row.kind), str(row.repository), str(row.digest), json.loads(row.payload), row.created_at
        )

    def read(self, after_id: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """Entries after `after_id`, oldest first, without taking them (for inspection and tests).

        Not a delivery cursor: ids are handed out when a transaction inserts, not when it commits,
        so a slow transaction can commit an entry below an id already read. Consumers use `take`.
        """
        o = s.outbox.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(s.outbox).where(o.id > after_id).order_by(o.id).limit(limit)).all()
        return [self._entry(r) for r in rows]

    def take(self, handle: Callable[[Connection, list[OutboxEntry]], None], limit: int = 100) -> int:
        """Hand the oldest entries (at most `limit`) to `handle`, and delete them, in one transaction.

        If `handle` raises, nothing is deleted and the entries are taken again next time. On
        PostgreSQL the batch is row-locked and concurrent takers skip it (SKIP LOCKED), so several
        processes may take at once; each batch is in id order. Returns how many were taken.
        """
        o = s.outbox.c
        stmt = sa.select(s.outbox).order_by(o.id).limit(limit)
        if not self.db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        with self.db.write() as conn:
            entries = [self._entry(r) for r in conn.execute(stmt).all()]
            if not entries:
                return 0
            handle(conn, entries)
            conn.execute(sa.delete(s.outbox).where(o.id.in_([e.id for e in entries])))
        return len(entries)

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(s.outbox)).scalar() or 0)


class OutboxListener(Listener):
    """Writes the events that leave the process to the outbox, in the change's transaction."""

    def __init__(self, outbox: Outbox, kinds: Collection[type[ChangeEvent]] = OUTBOX_EVENTS) -> None:
        self.outbox = outbox
        self.kinds = frozenset(kinds)

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        if type(event) in self.kinds:
            self.outbox.write(conn, event)
