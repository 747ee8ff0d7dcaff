"""Read models for the web UI: projects, repositories and tags a page at a time.

Every read is bounded (a page, or the few rows a page names) and served by an index: tags by
(repository_id, updated_at), repositories by (project_id, pushed_at) (migrations 0016, 0018).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.oci.names import project_of
from dockyard.services.errors import InvalidInput, NameUnknown
from dockyard.services.projects import ProjectService
from dockyard.services.registry.repositories import repository_id
from dockyard.services.registry.validation import check_name

MAX_PAGE = 200
TAG_COUNT_CAP = 1000  # a repository's tags are counted up to this many on the repositories page


@dataclass(frozen=True, slots=True)
class ProjectStats:
    repositories: int
    last_push: float | None


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    created_at: float
    tags: int  # at most TAG_COUNT_CAP + 1: more than the cap
    used_bytes: int
    last_push: float | None


@dataclass(frozen=True, slots=True)
class RepositoryPage:
    rows: list[RepositoryRow]
    page: int
    more: bool


@dataclass(slots=True)
class TagView:
    name: str
    digest: str
    media_type: str
    pushed_at: float
    size: int  # the image's config and layers (for an index: those of all its images)
    platforms: int  # images an index lists; 0 for an image
    immutable_rule: str | None
    vulnerabilities: dict[str, int] | None  # findings by severity; None: not scanned
    scan_status: str | None
    children: tuple[str, ...] = ()  # an index's images


@dataclass(frozen=True, slots=True)
class TagPage:
    rows: list[TagView]
    next_cursor: str | None  # `after` for the next page


@dataclass(slots=True)
class ImageFacts:
    """What the image's manifest row knows beyond its bytes."""

    digest: str
    media_type: str
    size: int
    created_at: float
    tags: list[str] = field(default_factory=list)
    blob_sizes: dict[str, int] = field(default_factory=dict)


def _cursor(pushed_at: float, name: str) -> str:
    return f"{pushed_at!r}_{name}"


def _parse_cursor(cursor: str) -> tuple[float, str]:
    at, _sep, name = cursor.partition("_")
    try:
        return float(at), name
    except ValueError:
        raise InvalidInput("bad page cursor") from None


def _pushed(at: float | None) -> float | None:
    """A repository's last push; 0 (the column's default) is never."""
    return float(at) if at else None


def _contains(column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
    return column.contains(text, autoescape=True)


class BrowseService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def project_stats(self, project_ids: Iterable[int]) -> dict[int, ProjectStats]:
        """Repository count and last push of each project: one grouped statement over the
        (project_id, pushed_at) index, however many tags the repositories hold."""
        ids = sorted(set(project_ids))
        if not ids:
            return {}
        r = s.repositories.c
        stmt = sa.select(r.project_id, sa.func.count(), sa.func.max(r.pushed_at))
        with self.db.read() as conn:
            found = {
                int(i): (int(n), _pushed(last))
                for i, n, last in conn.execute(stmt.where(r.project_id.in_(ids)).group_by(r.project_id))
            }
        return {i: ProjectStats(*found.get(i, (0, None))) for i in ids}

    def repositories(self, project_id: int, query: str = "", page: int = 1, per_page: int = 50) -> RepositoryPage:
        """A project's repositories whose name contains `query`, most recently pushed first: a walk of
        the (project_id, pushed_at) index; the tag count is read for the rows shown only."""
        if page < 1 or not 1 <= per_page <= MAX_PAGE:
            raise InvalidInput("bad page")
        r, t = s.repositories.c, s.tags.c
        shown = sa.select(r.id, r.name, r.created_at, r.used_bytes, r.pushed_at).where(r.project_id == project_id)
        if query:
            shown = shown.where(_contains(r.name, query))
        shown_q = (
            shown.order_by(r.pushed_at.desc(), r.name).limit(per_page + 1).offset((page - 1) * per_page).subquery()
        )
        # Counted up to TAG_COUNT_CAP + 1 (shown as "1,000+"): a repository of 100,000 tags costs
        # what one of a thousand does.
        some = sa.select(sa.literal(1)).where(t.repository_id == shown_q.c.id).limit(TAG_COUNT_CAP + 1)
        count = sa.select(sa.func.count()).select_from(some.correlate(shown_q).subquery()).scalar_subquery()
        stmt = sa.select(shown_q, count.label("tags")).order_by(shown_q.c.pushed_at.desc(), shown_q.c.name)
        with self.db.read() as conn:
            rows = [
                RepositoryRow(
                    str(row.name),
                    float(row.created_at),
                    int(row.tags or 0),
                    int(row.used_bytes),
                    _pushed(row.pushed_at),
                )
                for row in conn.execute(stmt)
            ]
        return RepositoryPage(rows[:per_page], page, len(rows) > per_page)

    def tags(self, repository: str, query: str = "", after: str | None = None, per_page: int = 50) -> TagPage:
        """A page of the repository's tags, most recently pushed first (keyset on push time, name)."""
        if not 1 <= per_page <= MAX_PAGE:
            raise InvalidInput("bad page size")
        check_name(repository)
        t, m = s.tags.c, s.manifests.c
        with self.db.read() as conn:
            repo_id = repository_id(conn, repository)
            if repo_id is None:
                raise NameUnknown("repository name not known to registry", {"name": repository})
            stmt = (
                sa.select(t.name, t.updated_at, t.manifest_id, m.digest, m.media_type)
                .select_from(s.tags.join(s.manifests, m.id == t.manifest_id))
                .where(t.repository_id == repo_id)
            )
            if query:
                stmt = stmt.where(_contains(t.name, query))
            if after:
                at, name = _parse_cursor(after)
                # `updated_at <= at` too: the bound the index walk starts from (the OR alone is a filter).
                stmt = stmt.where(
                    t.updated_at <= at, sa.or_(t.updated_at < at, sa.and_(t.updated_at == at, t.name > name))
                )
            stmt = stmt.order_by(t.updated_at.desc(), t.name).limit(per_page + 1)
            found = conn.execute(stmt).all()
            more = len(found) > per_page
            found = found[:per_page]
            manifest_ids = [int(row.manifest_id) for row in found]
            children = self._children(conn, manifest_ids)
            sizes = self._sizes(conn, repo_id, manifest_ids, children)
            digests = {str(row.digest) for row in found} | {d for kids in children.values() for d in kids}
            scans = self._scans(conn, digests)
            rules = self._rules(conn, project_of(repository))
        rows = []
        for row in found:
            kids = children.get(int(row.manifest_id), [])
            summary, status = _summary([str(row.digest), *kids], scans)
            rows.append(
                TagView(
                    name=str(row.name),
                    digest=str(row.digest),
                    media_type=str(row.media_type),
                    pushed_at=float(row.updated_at),
                    size=sizes.get(int(row.manifest_id), 0),
                    platforms=len(kids),
                    immutable_rule=next((p for p in rules if fnmatch.fnmatchcase(str(row.name), p)), None),
                    vulnerabilities=summary,
                    scan_status=status,
                    children=tuple(kids),
                )
            )
        last = found[-1] if found else None
        cursor = _cursor(float(last.updated_at), str(last.name)) if more and last is not None else None
        return TagPage(rows, cursor)

    def image(self, repository: str, digest: str) -> ImageFacts | None:
        """The manifest row of `digest` in `repository`, its tags (at most 100) and its blobs' sizes."""
        m, t, mb, b = s.manifests.c, s.tags.c, s.manifest_blobs.c, s.blobs.c
        with self.db.read() as conn:
            repo_id = repository_id(conn, repository)
            if repo_id is None:
                return None
            row = conn.execute(
                sa.select(m.id, m.digest, m.media_type, m.size, m.created_at).where(
                    m.repository_id == repo_id, m.digest == digest
                )
            ).first()
            if row is None:
                return None
            tags = conn.execute(
                sa.select(t.name).where(t.manifest_id == row.id).order_by(t.updated_at.desc()).limit(100)
            ).scalars()
            blob_sizes = conn.execute(
                sa.select(mb.digest, b.size)
                .select_from(s.manifest_blobs.join(s.blobs, b.digest == mb.digest))
                .where(mb.manifest_id == row.id)
            )
            return ImageFacts(
                str(row.digest),
                str(row.media_type),
                int(row.size),
                float(row.created_at),
                [str(x) for x in tags],
                {str(d): int(sz) for d, sz in blob_sizes},
            )

    # --- the few rows a page of tags names --------------------------------------------------------
    @staticmethod
    def _children(conn: sa.Connection, manifest_ids: list[int]) -> dict[int, list[str]]:
        if not manifest_ids:
            return {}
        mc = s.manifest_children.c
        out: dict[int, list[str]] = {}
        for mid, child in conn.execute(
            sa.select(mc.manifest_id, mc.child_digest).where(mc.manifest_id.in_(manifest_ids))
        ):
            out.setdefault(int(mid), []).append(str(child))
        return out

    @staticmethod
    def _sizes(
        conn: sa.Connection, repo_id: int, manifest_ids: list[int], children: dict[int, list[str]]
    ) -> dict[int, int]:
        """Bytes of config and layers per manifest; an index counts those of the images it lists."""
        m, mb, b = s.manifests.c, s.manifest_blobs.c, s.blobs.c
        child_digests = sorted({d for kids in children.values() for d in kids})
        child_ids: dict[str, int] = {}
        if child_digests:
            child_ids = {
                str(d): int(i)
                for i, d in conn.execute(
                    sa.select(m.id, m.digest).where(m.repository_id == repo_id, m.digest.in_(child_digests))
                )
            }
        ids = sorted(set(manifest_ids) | set(child_ids.values()))
        if not ids:
            return {}
        own = {
            int(i): int(total or 0)
            for i, total in conn.execute(
                sa.select(mb.manifest_id, sa.func.sum(b.size))
                .select_from(s.manifest_blobs.join(s.blobs, b.digest == mb.digest))
                .where(mb.manifest_id.in_(ids))
                .group_by(mb.manifest_id)
            )
        }
        out = {}
        for mid in manifest_ids:
            kids = children.get(mid)
            out[mid] = sum(own.get(child_ids.get(d, -1), 0) for d in kids) if kids else own.get(mid, 0)
        return out

    @staticmethod
    def _scans(conn: sa.Connection, digests: set[str]) -> dict[str, tuple[str, dict[str, int] | None]]:
        if not digests:
            return {}
        c = s.image_scans.c
        rows = conn.execute(sa.select(c.digest, c.status, c.summary).where(c.digest.in_(sorted(digests))))
        return {str(d): (str(st), json.loads(sm) if sm else None) for d, st, sm in rows}

    @staticmethod
    def _rules(conn: sa.Connection, project: str) -> list[str]:
        pid = ProjectService.id_of(conn, project)  # projects are ProjectService's table
        if pid is None:
            return []
        r = s.tag_rules.c
        stmt = sa.select(r.pattern).where(r.project_id == pid, r.kind == "immutable").order_by(r.pattern)
        return [str(x) for x in conn.execute(stmt).scalars()]


def _summary(
    digests: list[str], scans: dict[str, tuple[str, dict[str, int] | None]]
) -> tuple[dict[str, int] | None, str | None]:
    """Findings by severity over the tag's image or an index's images (the index itself is not scanned)."""
    total: dict[str, int] = {}
    statuses = []
    for d in digests:
        found = scans.get(d)
        if found is None:
            continue
        statuses.append(found[0])
        for sev, n in (found[1] or {}).items():
            total[sev] = total.get(sev, 0) + int(n)
    if not statuses:
        return None, None
    status = "done" if all(x == "done" for x in statuses) else statuses[0]
    return (total if status == "done" else None), status
