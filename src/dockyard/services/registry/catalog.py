"""Tag lists and the repository catalog, paginated by `n` and `last` in byte order."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.errors import NameUnknown
from dockyard.services.registry.repositories import byte_order, repository_id
from dockyard.services.registry.validation import check_name


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    more: bool  # another page follows the last item

    @property
    def last(self) -> str | None:
        return self.items[-1] if self.items else None


class CatalogService:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        check_name(name)
        with self.db.read() as conn:
            repo_id = repository_id(conn, name)
            if repo_id is None:
                raise NameUnknown("repository name not known to registry", {"name": name})
            q = sa.select(s.tags.c.name).where(s.tags.c.repository_id == repo_id)
            return self._page(conn, q, s.tags.c.name, n, last)

    def repositories(self, n: int | None = None, last: str | None = None) -> Page:
        with self.db.read() as conn:
            return self._page(conn, sa.select(s.repositories.c.name), s.repositories.c.name, n, last)
