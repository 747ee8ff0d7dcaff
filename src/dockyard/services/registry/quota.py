"""Storage usage per repository and project, and the project quota a new blob must fit in."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.errors import QuotaExceeded
from dockyard.services.projects import ProjectService


def account_link(db: Database, conn: Connection, repo_id: int, digest: str, size: int, delta: int) -> None:
    """Keep repository and project usage right as links come and go; a blob counts once per project.

    Raises QuotaExceeded (and so rolls the link back) when a new blob would take a project over quota.
    The project's quota, usage and row lock are ProjectService's (owner of `projects`).
    """
    r, pb = s.repositories.c, s.project_blobs.c
    conn.execute(sa.update(s.repositories).where(r.id == repo_id).values(used_bytes=r.used_bytes + delta * size))
    project_id = conn.execute(sa.select(r.project_id).where(r.id == repo_id)).scalar()
    if project_id is None:
        return
    if delta > 0:
        new = conn.execute(
            db.insert_ignore(s.project_blobs, project_id=project_id, digest=digest, size=size, links=1).returning(
                pb.digest
            )
        ).scalar()
        if new is None:
            conn.execute(
                sa.update(s.project_blobs)
                .where(pb.project_id == project_id, pb.digest == digest)
                .values(links=pb.links + 1)
            )
            return
        project = ProjectService.lock_quota(conn, project_id)
        if project.quota_bytes is not None and project.used_bytes + size > project.quota_bytes:
            raise QuotaExceeded(project.name, project.quota_bytes, project.used_bytes, size)
        ProjectService.add_usage(conn, project_id, size)
        return
    links = conn.execute(
        sa.update(s.project_blobs)
        .where(pb.project_id == project_id, pb.digest == digest)
        .values(links=pb.links - 1)
        .returning(pb.links, pb.size)
    ).first()
    if links is not None and links.links <= 0:
        conn.execute(sa.delete(s.project_blobs).where(pb.project_id == project_id, pb.digest == digest))
        ProjectService.add_usage(conn, project_id, -links.size)


def check_quota(db: Database, conn: Connection, repo_id: int, digest: str, size: int) -> None:
    """Refuse, before any bytes are committed, a blob that would take the project over its quota."""
    r, pb = s.repositories.c, s.project_blobs.c
    # One statement: the repository's project id goes to ProjectService as a subquery.
    row = ProjectService.quota_of(conn, sa.select(r.project_id).where(r.id == repo_id).scalar_subquery())
    if row is None or row.quota_bytes is None:
        return
    held = conn.execute(sa.select(pb.digest).where(pb.project_id == row.id, pb.digest == digest)).first()
    if held is None and row.used_bytes + size > row.quota_bytes:
        raise QuotaExceeded(row.name, row.quota_bytes, row.used_bytes, size)
