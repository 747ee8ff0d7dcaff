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


def byte_order(db: Database, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """Compare/sort strings by bytes on both engines (PostgreSQL's default collation is locale-aware)."""
    return column if db.is_sqlite else column.collate("C")
