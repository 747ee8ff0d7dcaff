"""Writing the tag history: a registry listener, in the transaction of each tag change.

A push by tag is told as ManifestPushed, followed by TagMoved when the tag pointed elsewhere; a
revert of a tag that still exists only as TagMoved. The listener therefore compares with the tag's
latest entry: a push of what the tag already points at is no move, and the TagMoved after a push
completes the entry the push wrote (a tag older than the history gets its previous digest there).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.oci.names import project_of
from dockyard.services.audit import Actor
from dockyard.services.events.listener import Listener
from dockyard.services.events.model import ChangeEvent, ManifestDeleted, ManifestPushed, TagDeleted, TagMoved

MOVED, DELETED = "moved", "deleted"


def latest_entry(conn: Connection, repository: str, tag: str) -> Any:
    h = s.tag_history.c
    return conn.execute(
        sa.select(h.id, h.digest, h.previous_digest, h.action)
        .where(h.repository == repository, h.tag == tag)
        .order_by(h.at.desc(), h.id.desc())
        .limit(1)
    ).first()


def held_until(conn: Connection, repository: str, digest: str, keep: float) -> float | None:
    """Until when the tag history holds manifest `digest` of `repository` from the collector: `keep`
    seconds after the last entry naming it (as a tag's target, or as what a tag moved away from);
    None when no entry names it or `keep` is 0. One indexed statement per candidate."""
    if keep <= 0:
        return None
    h = s.tag_history.c
    last = conn.execute(
        sa.select(sa.func.max(h.at)).where(
            h.repository == repository, sa.or_(h.digest == digest, h.previous_digest == digest)
        )
    ).scalar()
    return None if last is None else float(last) + keep


class TagHistoryListener(Listener):
    """Keeps `tag_history`: one row per tag move (or creation) and per tag deletion."""

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        match event:
            case ManifestPushed(tag=str(tag)):
                latest = latest_entry(conn, event.repository, tag)
                if latest is not None and latest.action == MOVED and latest.digest == event.digest:
                    return  # pushed again: the tag did not move
                previous = latest.digest if latest is not None and latest.action == MOVED else None
                self._add(conn, event.repository, tag, event.digest, previous, MOVED, event.actor, event.at)
            case TagMoved():
                latest = latest_entry(conn, event.repository, event.tag)
                if latest is not None and latest.action == MOVED and latest.digest == event.digest:
                    if latest.previous_digest != event.old_digest:
                        h = s.tag_history.c
                        conn.execute(
                            sa.update(s.tag_history).where(h.id == latest.id).values(previous_digest=event.old_digest)
                        )
                    return
                old = event.old_digest
                self._add(conn, event.repository, event.tag, event.digest, old, MOVED, event.actor, event.at)
            case TagDeleted():
                self._add(conn, event.repository, event.tag, event.digest, None, DELETED, event.actor, event.at)
            case ManifestDeleted(tags=tags) if tags:
                for tag in tags:
                    self._add(conn, event.repository, tag, event.digest, None, DELETED, event.actor, event.at)

    @staticmethod
    def _add(
        conn: Connection,
        repository: str,
        tag: str,
        digest: str,
        previous: str | None,
        action: str,
        actor: Actor,
        at: float,
    ) -> None:
        conn.execute(
            sa.insert(s.tag_history).values(
                project=project_of(repository),
                repository=repository,
                tag=tag,
                digest=digest,
                previous_digest=previous,
                action=action,
                at=at,
                actor=actor.name,
                actor_kind=actor.kind,
            )
        )
