"""Tag lists and the repository catalog, paginated by `n` and `last` in byte order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.db.lookups import PARTS_PER_STATEMENT, first_rows
from dockyard.services.errors import NameUnknown
from dockyard.services.projects import in_project
from dockyard.services.registry.read_cache import StampedCache
from dockyard.services.registry.repositories import byte_order, repository_id
from dockyard.services.registry.validation import check_name


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    more: bool  # another page follows the last item

    @property
    def last(self) -> str | None:
        return self.items[-1] if self.items else None


@dataclass(frozen=True, slots=True)
class TagRow:
    name: str
    updated_at: float  # when the tag was last pushed or moved
    digest: str  # the manifest it points at


# Tag lists up to this long are remembered (while the database has not changed); longer ones are read.
CACHED_TAGS = 10_000
TAGS_PER_LOCATION = 100  # tag names `locations` gives per repository holding an image


TAG_PAGES_BYTES = 8 * 1024 * 1024


def _page_bytes(page: Page) -> int:
    # A str object's size is about 50 bytes plus its characters; the list holds a pointer to each.
    return sum(58 + len(t) for t in page.items)


class CatalogService:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Bounded by size as well: 256 lists of 10,000 tags would otherwise be ~150 MiB per worker.
        self._tag_pages: StampedCache[tuple[str, int | None, str | None], Page] = StampedCache(
            db.changes, 256, weigh=_page_bytes, max_weight=TAG_PAGES_BYTES
        )

    def _page(
        self, conn: sa.Connection, q: sa.Select[tuple[str]], col: sa.ColumnElement[str], n: int | None, last: str | None
    ) -> Page:
        ordered = byte_order(self.db, col)
        if last:
            q = q.where(ordered > last)
        q = q.order_by(ordered)
        if n is not None:
            if n <= 0:
                return Page([], False)
            q = q.limit(n + 1)
        items: list[str] = [str(v) for v in conn.execute(q).scalars()]
        more = n is not None and len(items) > n
        return Page(items[:n] if more else items, more)

    def tags(self, name: str, n: int | None = None, last: str | None = None) -> Page:
        key = (name, n, last)
        page = self._tag_pages.get(key)
        if page is not None:
            return page
        check_name(name)
        stamp = self._tag_pages.stamp()
        with self.db.read() as conn:
            repo_id = repository_id(conn, name)
            if repo_id is None:
                raise NameUnknown("repository name not known to registry", {"name": name})
            q = sa.select(s.tags.c.name).where(s.tags.c.repository_id == repo_id)
            page = self._page(conn, q, s.tags.c.name, n, last)
        if len(page.items) <= CACHED_TAGS:
            self._tag_pages.put(stamp, key, page)
        return page

    def repositories(self, n: int | None = None, last: str | None = None) -> Page:
        with self.db.read() as conn:
            return self._page(conn, sa.select(s.repositories.c.name), s.repositories.c.name, n, last)

    # -- reads for other services: repositories, manifests and tags are the registry's tables ------

    @staticmethod
    def has_repositories(conn: sa.Connection, project: str) -> bool:
        """Whether any repository is in the project (ProjectService refuses to delete it then), in
        the caller's transaction."""
        r = s.repositories.c
        return conn.execute(sa.select(r.id).where(in_project(r.name, project)).limit(1)).first() is not None

    def repositories_in(self, project: str) -> list[tuple[str, float, int, int]]:
        """(name, created_at, tag count, used bytes) of every repository in the project, by name."""
        r, t = s.repositories.c, s.tags.c
        stmt = (
            sa.select(r.name, r.created_at, sa.func.count(t.name), r.used_bytes)
            .select_from(s.repositories.outerjoin(s.tags, t.repository_id == r.id))
            .where(in_project(r.name, project))
            .group_by(r.id, r.name, r.created_at, r.used_bytes)
            .order_by(r.name)
        )
        with self.db.read() as conn:
            return [(n, float(created), int(count), int(used)) for n, created, count, used in conn.execute(stmt)]

    @staticmethod
    def stored(conn: sa.Connection, digest: str) -> bool:
        """Whether any repository still stores the manifest (in the caller's transaction)."""
        m = s.manifests.c
        return conn.execute(sa.select(m.id).where(m.digest == digest).limit(1)).first() is not None

    @staticmethod
    def manifest_in(conn: sa.Connection, repository: str, digest: str) -> tuple[str, bytes] | None:
        """A manifest's media type and bytes in one repository (in the caller's transaction: a
        listener reads what its push is storing)."""
        m, r = s.manifests.c, s.repositories.c
        row = conn.execute(
            sa.select(m.media_type, m.content)
            .select_from(s.manifests.join(s.repositories, r.id == m.repository_id))
            .where(r.name == repository, m.digest == digest)
        ).first()
        return None if row is None else (str(row.media_type), bytes(row.content))

    @staticmethod
    def tags_on(conn: sa.Connection, repository: str, digest: str, prefix: str = "") -> list[str]:
        """The tags of a repository that point at `digest` (those starting with `prefix`)."""
        m, r, t = s.manifests.c, s.repositories.c, s.tags.c
        stmt = (
            sa.select(t.name)
            .select_from(s.tags.join(s.manifests, m.id == t.manifest_id).join(s.repositories, r.id == t.repository_id))
            .where(r.name == repository, m.digest == digest)
        )
        if prefix:
            stmt = stmt.where(t.name.startswith(prefix, autoescape=True))
        return [str(n) for n in conn.execute(stmt).scalars()]

    def manifest_content(self, digest: str) -> tuple[str, bytes] | None:
        """A stored manifest's media type and bytes, in whichever repository it is."""
        m = s.manifests.c
        with self.db.read() as conn:
            row = conn.execute(sa.select(m.media_type, m.content).where(m.digest == digest).limit(1)).first()
        return (row.media_type, bytes(row.content)) if row else None

    def locations(self, digests: Iterable[str], tags: int = TAGS_PER_LOCATION) -> dict[str, list[dict[str, Any]]]:
        """Where each image digest lives: repository and tags, of the image itself or of an index
        that lists it (tags usually point at the index). At most `tags` tag names per location, by
        name (the (manifest_id, name) index: an image under 100,000 tags costs what one under ten
        does); `more_tags` says some were left out."""
        where: dict[str, list[dict[str, Any]]] = {d: [] for d in sorted(set(digests))}
        if not where:
            return where
        m, t, r_, mc = s.manifests.c, s.tags.c, s.repositories.c, s.manifest_children.c
        direct = sa.select(m.id, m.digest.label("image"), r_.name).join(s.repositories, r_.id == m.repository_id)
        direct = direct.where(m.digest.in_(list(where)))
        parents = (
            sa.select(m.id, mc.child_digest.label("image"), r_.name)
            .select_from(s.manifest_children.join(s.manifests, m.id == mc.manifest_id))
            .join(s.repositories, r_.id == m.repository_id)
            .where(mc.child_digest.in_(list(where)))
        )
        with self.db.read() as conn:
            for q in (direct, parents):
                for row in conn.execute(q):
                    names: list[str] = []
                    if tags > 0:
                        stmt = sa.select(t.name).where(t.manifest_id == row.id).order_by(t.name).limit(tags + 1)
                        names = list(conn.execute(stmt).scalars())
                    where[row.image].append(
                        {"repository": row.name, "tags": names[:tags], "more_tags": len(names) > tags}
                    )
        return where

    def indexes_listing(self, digests: Iterable[str]) -> list[tuple[str, str]]:
        """(index digest, child digest) for every stored index, in any repository, that lists one of
        `digests` (the exposure report: an index of an affected image is affected)."""
        wanted = sorted(set(digests))
        if not wanted:
            return []
        m, mc = s.manifests.c, s.manifest_children.c
        stmt = (
            sa.select(m.digest, mc.child_digest)
            .select_from(s.manifest_children.join(s.manifests, m.id == mc.manifest_id))
            .where(mc.child_digest.in_(wanted))
            .distinct()
        )
        with self.db.read() as conn:
            return [(str(index), str(child)) for index, child in conn.execute(stmt)]

    def holding(self, digests: Iterable[str]) -> list[tuple[str, str]]:
        """(repository, digest) for every stored manifest of `digests`: one row per manifest, however
        many tags point at it."""
        wanted = sorted(set(digests))
        if not wanted:
            return []
        m, r_ = s.manifests.c, s.repositories.c
        stmt = sa.select(r_.name, m.digest).join(s.repositories, r_.id == m.repository_id)
        with self.db.read() as conn:
            return [(str(a), str(b)) for a, b in conn.execute(stmt.where(m.digest.in_(wanted)).order_by(r_.name))]

    def stored_with_tags(
        self, digests: Iterable[str], limit: int | None = None
    ) -> list[tuple[str, str, str | None, float | None]]:
        """(repository, digest, tag, tag's last change) for every stored manifest of `digests`, one row
        per tag on it (tag None: stored untagged), by repository and tag; the first `limit` rows (None:
        all, in one statement)."""
        wanted = sorted(set(digests))
        if not wanted:
            return []
        if limit is not None:
            return self._first_stored_with_tags(wanted, limit)
        m, t, r_ = s.manifests.c, s.tags.c, s.repositories.c
        stmt = (
            sa.select(r_.name, m.digest, t.name.label("tag"), t.updated_at)
            .select_from(
                s.manifests.join(s.repositories, r_.id == m.repository_id).outerjoin(s.tags, t.manifest_id == m.id)
            )
            .where(m.digest.in_(wanted))
            .order_by(r_.name, t.name)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.db.read() as conn:
            return [(str(a), str(b), c, d) for a, b, c, d in conn.execute(stmt)]

    def _first_stored_with_tags(self, wanted: list[str], limit: int) -> list[tuple[str, str, str | None, float | None]]:
        """`stored_with_tags`'s first rows: each manifest's first tags by name from the (manifest_id,
        name) index (an image under 100,000 tags: reading and sorting them all took 30 ms), a
        statement per PARTS_PER_STATEMENT manifests, until `limit` rows are found."""
        m, t, r_ = s.manifests.c, s.tags.c, s.repositories.c
        out: list[tuple[str, str, str | None, float | None]] = []
        with self.db.read() as conn:
            held = conn.execute(
                sa.select(m.id, r_.name, m.digest)
                .join(s.repositories, r_.id == m.repository_id)
                .where(m.digest.in_(wanted))
                .order_by(r_.name, m.digest)
            ).all()
            for start in range(0, len(held), PARTS_PER_STATEMENT):
                chunk = held[start : start + PARTS_PER_STATEMENT]
                parts = [
                    sa.select(sa.literal(i).label("part"), t.name.label("tag"), t.updated_at)
                    .where(t.manifest_id == manifest_id)
                    .order_by(t.name)
                    for i, (manifest_id, _, _) in enumerate(chunk)
                ]
                found = first_rows(conn, parts, ("part", "tag"), limit)
                tags: dict[int, list[tuple[str, float]]] = {}
                for row in found:
                    tags.setdefault(row["part"], []).append((row["tag"], row["updated_at"]))
                # A manifest without rows here is untagged, or past the answer's last row: then the
                # row made for it falls past `limit`.
                for i, (_, repository, digest) in enumerate(chunk):
                    if i not in tags:
                        out.append((repository, digest, None, None))
                    out.extend((repository, digest, tag, at) for tag, at in tags.get(i, []))
                if len(out) >= limit:
                    break
        return out[:limit]

    # -- reads for retention: its plan is one read transaction over several of them, so they take
    # the caller's connection (the statements are retention's, run by the tables' owner) ----------

    @staticmethod
    def project_repositories(conn: sa.Connection, project: str) -> list[tuple[int, str]]:
        """(id, name) of every repository in the project, by name."""
        r = s.repositories.c
        stmt = sa.select(r.id, r.name).where(in_project(r.name, project)).order_by(r.name)
        return [(int(repo_id), str(name)) for repo_id, name in conn.execute(stmt)]

    @staticmethod
    def tags_by_recency(conn: sa.Connection, repo_id: int) -> list[TagRow]:
        """The repository's tags, most recently pushed first (ties by name), with their manifests."""
        t, m = s.tags.c, s.manifests.c
        rows = conn.execute(
            sa.select(t.name, t.updated_at, m.digest)
            .select_from(s.tags.join(s.manifests, m.id == t.manifest_id))
            .where(t.repository_id == repo_id)
            .order_by(t.updated_at.desc(), t.name)
        )
        return [TagRow(str(name), float(at), str(digest)) for name, at, digest in rows]

    @staticmethod
    def unheld_manifests(conn: sa.Connection, repo_id: int) -> list[str]:
        """Digests of the repository's manifests that no tag, no index of the repository and no
        subject still present holds (a referrer stays with its subject)."""
        m, t, mc = s.manifests.c, s.tags.c, s.manifest_children.c
        parent = s.manifests.alias("parent")
        rows = conn.execute(
            sa.select(m.digest, m.subject_digest).where(
                m.repository_id == repo_id,
                ~sa.exists().where(t.manifest_id == m.id),
                ~sa.exists()
                .select_from(s.manifest_children.join(parent, parent.c.id == mc.manifest_id))
                .where(parent.c.repository_id == repo_id, mc.child_digest == m.digest),
            )
        ).all()
        present = set(conn.execute(sa.select(m.digest).where(m.repository_id == repo_id)).scalars())
        return [str(digest) for digest, subject in rows if not (subject and subject in present)]
