"""Robot accounts: named credentials for automation, scoped to projects with explicit actions."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.audit import AuditLog
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.identity import ROBOT_PREFIX
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.auth.permissions import ROBOT_ACTIONS
from dockyard.services.errors import Conflict, InvalidInput, NotFound

_NAME_RE = re.compile(r"[a-z0-9]+(?:[._+-][a-z0-9]+)*")  # fullmatch: no trailing newline
ROBOT_NAME_PATTERN = rf"^(?:robot\$)?{_NAME_RE.pattern}$"  # for the API document: with or without the prefix


@dataclass(frozen=True, slots=True)
class Robot:
    id: int
    name: str  # the login name, robot$<name>
    description: str | None
    expires_at: float | None
    disabled: bool
    created_by: str | None
    created_at: float
    permissions: dict[str, list[str]]  # project -> actions


@dataclass(frozen=True, slots=True)
class CreatedRobot:
    robot: Robot
    secret: str  # shown once


def login_name(name: str) -> str:
    return name if name.startswith(ROBOT_PREFIX) else ROBOT_PREFIX + name


def _check_permissions(permissions: dict[str, list[str]]) -> dict[str, list[str]]:
    if not permissions:
        raise InvalidInput("a robot needs at least one project permission")
    clean: dict[str, list[str]] = {}
    for project, actions in permissions.items():
        bad = set(actions) - ROBOT_ACTIONS
        if bad or not actions:
            raise InvalidInput(
                f"robot actions must be a non-empty subset of {', '.join(sorted(ROBOT_ACTIONS))}",
                {"project": project, "actions": sorted(actions)},
            )
        clean[project] = sorted(set(actions))
    return clean


class RobotService:
    def __init__(self, db: Database, audit: AuditLog, liveness: LivenessCache | None = None) -> None:
        self.db = db
        self.audit = audit
        self.liveness = liveness or LivenessCache(ttl=0)

    def _load(self, conn: sa.Connection, name: str) -> Robot | None:
        row = conn.execute(sa.select(s.robots).where(s.robots.c.name == name)).first()
        if row is None:
            return None
        perms = conn.execute(
            sa.select(s.projects.c.name, s.robot_permissions.c.actions)
            .select_from(s.robot_permissions.join(s.projects, s.projects.c.id == s.robot_permissions.c.project_id))
            .where(s.robot_permissions.c.robot_id == row.id)
            .order_by(s.projects.c.name)
        ).all()
        return Robot(
            row.id,
            row.name,
            row.description,
            row.expires_at,
            bool(row.disabled),
            row.created_by,
            row.created_at,
            {p: a.split(",") for p, a in perms},
        )

    def create(
        self,
        name: str,
        permissions: dict[str, list[str]],
        expires_at: float | None = None,
        description: str | None = None,
        creator: str | None = None,
    ) -> CreatedRobot:
        short = name.removeprefix(ROBOT_PREFIX)
        if not _NAME_RE.fullmatch(short) or len(short) > 200:
            raise InvalidInput("invalid robot name: lowercase letters and digits separated by . _ + -", {"name": name})
        if expires_at is not None and expires_at <= now():
            raise InvalidInput("expiry must be in the future")
        perms = _check_permissions(permissions)
        secret = gen.generate(gen.ROBOT_PREFIX)
        full = login_name(short)
        with self.db.write() as conn:
            project_ids = {}
            for project in perms:
                pid = conn.execute(sa.select(s.projects.c.id).where(s.projects.c.name == project)).scalar()
                if pid is None:
                    raise NotFound(f"project {project!r} does not exist", {"project": project})
                project_ids[project] = pid
            # ON CONFLICT DO NOTHING: a concurrent create of the same name is a Conflict, not a 500.
            robot_id = conn.execute(
                self.db.insert_ignore(
                    s.robots,
                    name=full,
                    description=description,
                    secret_hash=gen.digest(secret),
                    expires_at=expires_at,
                    disabled=False,
                    created_by=creator,
                    created_at=now(),
                    uid=s.new_uid(),
                ).returning(s.robots.c.id)
            ).scalar()
            if robot_id is None:
                raise Conflict(f"robot {full!r} already exists", {"robot": full})
            for project, actions in perms.items():
                conn.execute(
                    sa.insert(s.robot_permissions).values(
                        robot_id=robot_id, project_id=project_ids[project], actions=",".join(actions)
                    )
                )
                self.audit.record(
                    conn,
                    "robot.create",
                    project=project,
                    reference=full,
                    detail={"actions": actions, "expires_at": expires_at},
                )
            robot = self._load(conn, full)
        assert robot is not None
        return CreatedRobot(robot, secret)

    def get(self, name: str) -> Robot:
        with self.db.read() as conn:
            robot = self._load(conn, login_name(name))
        if robot is None:
            raise NotFound(f"robot {login_name(name)!r} does not exist", {"robot": login_name(name)})
        return robot

    def list_robots(self, project: str | None = None) -> list[Robot]:
        stmt = sa.select(s.robots.c.name).order_by(s.robots.c.name)
        if project is not None:
            stmt = stmt.where(
                s.robots.c.id.in_(
                    sa.select(s.robot_permissions.c.robot_id)
                    .join(s.projects, s.projects.c.id == s.robot_permissions.c.project_id)
                    .where(s.projects.c.name == project)
                )
            )
        with self.db.read() as conn:
            out = []
            for name in conn.execute(stmt).scalars():
                robot = self._load(conn, name)
                if robot is not None:
                    out.append(robot)
            return out

    def set_disabled(self, name: str, disabled: bool) -> Robot:
        full = login_name(name)
        with self.db.write() as conn:
            if not conn.execute(sa.update(s.robots).where(s.robots.c.name == full).values(disabled=disabled)).rowcount:
                raise NotFound(f"robot {full!r} does not exist", {"robot": full})
            robot = self._load(conn, full)
            assert robot is not None
            for project in list(robot.permissions) or [None]:  # type: ignore[list-item]
                self.audit.record(conn, "robot.update", project=project, reference=full, detail={"disabled": disabled})
        self.liveness.clear()
        return robot

    def refresh_secret(self, name: str) -> str:
        full = login_name(name)
        secret = gen.generate(gen.ROBOT_PREFIX)
        with self.db.write() as conn:
            done = conn.execute(
                sa.update(s.robots).where(s.robots.c.name == full).values(secret_hash=gen.digest(secret))
            ).rowcount
            if not done:
                raise NotFound(f"robot {full!r} does not exist", {"robot": full})
            self.audit.record(conn, "robot.secret", reference=full)
        return secret

    def delete(self, name: str) -> None:
        full = login_name(name)
        with self.db.write() as conn:
            robot = self._load(conn, full)
            if robot is None:
                raise NotFound(f"robot {full!r} does not exist", {"robot": full})
            conn.execute(sa.delete(s.robot_permissions).where(s.robot_permissions.c.robot_id == robot.id))
            conn.execute(sa.delete(s.robots).where(s.robots.c.id == robot.id))
            for project in list(robot.permissions) or [None]:  # type: ignore[list-item]
                self.audit.record(conn, "robot.delete", project=project, reference=full)
        self.liveness.clear()
