"""Small helpers shared by the registry services: input validation and repository lookup."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidDigest, InvalidName, InvalidTag
from dockyard.oci.names import validate_name, validate_tag
from dockyard.services.errors import DigestInvalid, NameInvalid, TagInvalid


def check_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise NameInvalid(exc.message, exc.detail) from None


def check_tag(tag: str) -> str:
    try:
        return validate_tag(tag)
    except InvalidTag as exc:
        raise TagInvalid(exc.message, exc.detail) from None


def check_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise DigestInvalid(exc.message, {"digest": value}) from None


def repository_id(conn: Connection, name: str) -> int | None:
    return conn.execute(sa.select(s.repositories.c.id).where(s.repositories.c.name == name)).scalar()


def ensure_repository(db: Database, conn: Connection, name: str) -> int:
    repo_id = repository_id(conn, name)
    if repo_id is None:
        conn.execute(db.insert_ignore(s.repositories, name=name, created_at=now()))
        repo_id = repository_id(conn, name)
    assert repo_id is not None
    return repo_id


def byte_order(db: Database, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """Compare/sort strings by bytes on both engines (PostgreSQL's default collation is locale-aware)."""
    return column if db.is_sqlite else column.collate("C")


def link_blob(db: Database, conn: Connection, repo_id: int, digest: str, size: int) -> None:
    conn.execute(db.insert_ignore(s.blobs, digest=digest, size=size, created_at=now()))
    conn.execute(db.insert_ignore(s.repository_blobs, repository_id=repo_id, digest=digest, created_at=now()))
