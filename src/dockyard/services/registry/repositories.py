"""Repository rows: lookup by name, creation on first push, and the byte order names sort in."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci.names import project_of
from dockyard.services.projects import ProjectService


def repository_id(conn: Connection, name: str) -> int | None:
    return conn.execute(sa.select(s.repositories.c.id).where(s.repositories.c.name == name)).scalar()


def ensure_repository(db: Database, conn: Connection, name: str) -> int:
    repo_id = repository_id(conn, name)
    if repo_id is None:
        project_id = ProjectService.id_of(conn, project_of(name))
        conn.execute(db.insert_ignore(s.repositories, name=name, created_at=now(), project_id=project_id))
        repo_id = repository_id(conn, name)
    assert repo_id is not None
    return repo_id


def note_push(conn: Connection, repo_id: int) -> None:
    """A manifest was stored or a tag set in the repository: its last push is now. Called as the
    last statement of the push's transaction, so the row lock it takes (pushes to one repository
    queue here) is held only while that transaction commits and closes no cycle with other locks."""
    r, at = s.repositories.c, now()
    conn.execute(sa.update(s.repositories).where(r.id == repo_id, r.pushed_at < at).values(pushed_at=at))


def byte_order(db: Database, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """Compare/sort strings by bytes on both engines (PostgreSQL's default collation is locale-aware)."""
    return column if db.is_sqlite else column.collate("C")
