"""A tag's history, newest first, and the revert that points the tag back at an earlier manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.db.lookups import PARTS_PER_STATEMENT, each, first_rows
from dockyard.services.audit import AuditLog, parse_cursor
from dockyard.services.auth.identity import Identity
from dockyard.services.errors import NotFound
from dockyard.services.gates.chain import GateChain
from dockyard.services.gates.model import Stage, Subject
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.registry.manifests import ManifestService
from dockyard.services.registry.validation import check_digest, check_name, check_tag


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: int
    digest: str
    previous_digest: str | None
    action: str  # moved | deleted
    at: float
    actor: str
    actor_kind: str

    @property
    def cursor(self) -> str:
        return f"{self.at!r}_{self.id}"


@dataclass(frozen=True, slots=True)
class RevertResult:
    repository: str
    tag: str
    digest: str
    previous_digest: str | None  # what the tag pointed at before (None: it was absent)
    changed: bool


def named_in_history(conn: sa.Connection, repository: str, tag: str, digest: str) -> bool:
    h = s.tag_history.c
    return (
        conn.execute(
            sa.select(h.id)
            .where(h.repository == repository, h.tag == tag, sa.or_(h.digest == digest, h.previous_digest == digest))
            .limit(1)
        ).first()
        is not None
    )


class TagHistoryService:
    def __init__(
        self, db: Database, manifests: ManifestService, catalog: CatalogService, gates: GateChain, audit: AuditLog
    ) -> None:
        self.db = db
        self.manifests = manifests
        self.catalog = catalog
        self.gates = gates
        self.audit = audit

    def history(
        self, repository: str, tag: str, limit: int = 100, before: str | None = None
    ) -> tuple[list[HistoryEntry], str | None]:
        """Newest first; keyset paging on (at, id), as the audit log pages."""
        check_name(repository)
        check_tag(tag)
        h = s.tag_history.c
        stmt = sa.select(h.id, h.digest, h.previous_digest, h.action, h.at, h.actor, h.actor_kind).where(
            h.repository == repository, h.tag == tag
        )
        if before is not None:
            at, entry_id = parse_cursor(before)
            stmt = stmt.where(sa.or_(h.at < at, sa.and_(h.at == at, h.id < entry_id)))
        with self.db.read() as conn:
            rows = conn.execute(stmt.order_by(h.at.desc(), h.id.desc()).limit(limit)).all()
        entries = [HistoryEntry(**row._mapping) for row in rows]
        return entries, entries[-1].cursor if len(entries) == limit else None

    def last_moves(self, repository: str, tags: list[str]) -> dict[str, HistoryEntry]:
        """Each tag's newest history entry (who pushed it there, when): one statement of one indexed
        lookup per tag (`each`), so a tag moved a million times costs what a new one does."""
        if not tags:
            return {}
        h = s.tag_history.c
        wanted = each(self.db, sorted(set(tags)))
        newest = (
            sa.select(h.id)
            .where(h.repository == repository, h.tag == wanted.c.value)
            .order_by(h.at.desc(), h.id.desc())
            .limit(1)
            .correlate(wanted)
            .scalar_subquery()
        )
        cols = (h.id, h.tag, h.digest, h.previous_digest, h.action, h.at, h.actor, h.actor_kind)
        with self.db.read() as conn:
            rows = conn.execute(sa.select(*cols).where(h.id.in_(sa.select(newest).select_from(wanted)))).all()
        out = {}
        for row in rows:
            values = dict(row._mapping)
            tag = str(values.pop("tag"))
            out[tag] = HistoryEntry(**values)
        return out

    def revert(self, repository: str, tag: str, digest: str, caller: Identity | None) -> RevertResult:
        """Point `tag` back at `digest`, which must be named in the tag's history and still stored.
        The tag-time gates judge it first, immutability rules in the move's transaction (a revert is a
        tag move like any other), and the revert is audited in that transaction too."""
        check_name(repository)
        check_tag(tag)
        check_digest(digest)
        with self.db.read() as conn:
            if not named_in_history(conn, repository, tag, digest):
                raise NotFound(
                    f"{digest} is not in the history of tag {tag!r} of {repository!r}",
                    {"repository": repository, "tag": tag, "digest": digest},
                )
        stored = self.catalog.manifest_content(digest)  # content-addressed: the same bytes anywhere
        if stored is not None:  # gone: retag says so, in its own words
            media_type, content = stored
            self.gates.enforce(Stage.TAG, Subject(repository, digest, media_type, content, tag=tag, caller=caller))

        def audited(conn: sa.Connection, current: str | None) -> None:
            if current != digest:
                self.audit.record(
                    conn, "tag.revert", repository=repository, reference=tag, digest=digest, detail={"from": current}
                )

        previous = self.manifests.retag(repository, tag, digest, check=audited)
        return RevertResult(repository, tag, digest, previous, previous != digest)


def entries_naming(
    db: Database,
    digests: list[str],
    until: float | None,
    projects: frozenset[str] | None,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """Every history entry naming one of `digests` (as target or as what a tag left) before `until`,
    in `projects` (None: any), by tag and time: what the exposure report builds its intervals from.
    `limit`: only the first entries in that order."""
    if not digests or projects == frozenset():
        return []
    h = s.tag_history.c

    def naming(match: sa.ColumnElement[bool]) -> sa.Select[Any]:
        stmt = sa.select(h.id, h.repository, h.tag, h.digest, h.previous_digest, h.action, h.at).where(match)
        if until is not None:
            stmt = stmt.where(h.at < until)
        if projects is not None:
            stmt = stmt.where(h.project.in_(sorted(projects)))
        return stmt.order_by(h.repository, h.tag, h.at, h.id)

    wanted = sorted(set(digests))
    with db.read() as conn:
        if limit is not None and 2 * len(wanted) <= PARTS_PER_STATEMENT:
            # The first tags' entries from the (digest | previous_digest, repository, tag) indexes.
            parts = [naming(column == d) for d in wanted for column in (h.digest, h.previous_digest)]
            return first_rows(conn, parts, ("repository", "tag", "at", "id"), limit, distinct=True)
        stmt = naming(sa.or_(h.digest.in_(wanted), h.previous_digest.in_(wanted)))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [dict(r._mapping) for r in conn.execute(stmt)]
