"""Tag immutability: a tag matching a project's rule, once pushed, is never moved or deleted.

Patterns are shell-style (`v*`, `release-*`, `[0-9]*`), matched against the whole tag. Anyone with
tag-policy:manage may add a rule; only a system administrator may remove one (checked by the API).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci.names import project_of
from dockyard.services.audit import AuditLog
from dockyard.services.errors import Conflict, Denied, InvalidInput, NotFound
from dockyard.services.projects import ProjectService

IMMUTABLE = "immutable"


@dataclass(frozen=True, slots=True)
class TagRule:
    pattern: str
    created_by: str | None
    created_at: float


def immutable_rule(conn: sa.Connection, repository: str, tag: str) -> str | None:
    """The first immutability pattern of the repository's project that matches `tag`. Asked on
    every tag push: one statement, the project's id a subquery of ProjectService's."""
    r = s.tag_rules.c
    patterns = conn.execute(
        sa.select(r.pattern)
        .where(r.project_id == ProjectService.id_query(project_of(repository)), r.kind == IMMUTABLE)
        .order_by(r.pattern)
    ).scalars()
    for pattern in patterns:
        if fnmatch.fnmatchcase(tag, pattern):
            return str(pattern)
    return None


def refuse_if_immutable(conn: sa.Connection, repository: str, tag: str, what: str) -> None:
    rule = immutable_rule(conn, repository, tag)
    if rule is not None:
        raise Denied(
            f"tag {tag!r} is immutable (rule {rule!r} of project {repository.split('/', 1)[0]!r}): it cannot be {what}",
            {"tag": tag, "rule": rule},
        )


class TagRuleService:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def list_rules(self, project: str) -> list[TagRule]:
        with self.db.read() as conn:
            pid = ProjectService.existing_id(conn, project)
            rows = conn.execute(
                sa.select(s.tag_rules)
                .where(s.tag_rules.c.project_id == pid, s.tag_rules.c.kind == IMMUTABLE)
                .order_by(s.tag_rules.c.pattern)
            ).all()
        return [TagRule(r.pattern, r.created_by, r.created_at) for r in rows]

    def add(self, project: str, pattern: str, creator: str | None = None) -> TagRule:
        if not pattern or len(pattern) > 255 or any(c.isspace() for c in pattern):
            raise InvalidInput("a tag pattern is 1 to 255 characters without spaces", {"pattern": pattern})
        with self.db.write() as conn:
            pid = ProjectService.existing_id(conn, project)
            inserted = conn.execute(
                self.db.insert_ignore(
                    s.tag_rules, project_id=pid, kind=IMMUTABLE, pattern=pattern, created_by=creator, created_at=now()
                ).returning(s.tag_rules.c.id)
            ).scalar()
            if inserted is None:
                raise Conflict(f"rule {pattern!r} already exists", {"pattern": pattern})
            self.audit.record(conn, "tag-rule.add", project=project, reference=pattern, detail={"kind": IMMUTABLE})
        return TagRule(pattern, creator, now())

    def remove(self, project: str, pattern: str) -> None:
        with self.db.write() as conn:
            pid = ProjectService.existing_id(conn, project)
            gone = conn.execute(
                sa.delete(s.tag_rules).where(
                    s.tag_rules.c.project_id == pid, s.tag_rules.c.kind == IMMUTABLE, s.tag_rules.c.pattern == pattern
                )
            ).rowcount
            if not gone:
                raise NotFound(f"no immutability rule {pattern!r} in {project!r}", {"pattern": pattern})
            self.audit.record(conn, "tag-rule.remove", project=project, reference=pattern, detail={"kind": IMMUTABLE})
