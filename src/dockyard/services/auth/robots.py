"""Robot accounts: named credentials for automation, scoped to projects with explicit actions."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import now
from dockyard.services.auth import secrets as gen
from dockyard.services.auth.accounts import AccountService
from dockyard.services.auth.identity import ROBOT_NAME_PREFIX
from dockyard.services.auth.permissions import ROBOT_ACTIONS
from dockyard.services.errors import Conflict, InvalidInput, NotFound

_NAME_RE = re.compile(r"[a-z0-9]+(?:[._+-][a-z0-9]+)*")  # fullmatch: no trailing newline
# For the API document: with or without the prefix.
ROBOT_NAME_PATTERN = rf"^(?:{re.escape(ROBOT_NAME_PREFIX)})?{_NAME_RE.pattern}$"
_CREDENTIALS = gen.CredentialTable(s.robots, "secret_hash", gen.ROBOT_SECRET_PREFIX)


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
    return name if name.startswith(ROBOT_NAME_PREFIX) else ROBOT_NAME_PREFIX + name


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


@dataclass(frozen=True, slots=True)
class RobotLogin:
    """What a login needs to know of a robot (its secret stays a digest)."""

    uid: str
    secret_hash: str | None
    live: bool  # neither disabled nor expired


class RobotService(AccountService):
    """Owns the `robots` and `robot_permissions` tables."""

    # --- for the authenticator and the access policy ------------------------------------------
    def login_record(self, name: str, uid: str | None = None) -> RobotLogin | None:
        """The robot of this login name (and, for a token's holder, this never-reused uid)."""
        r = s.robots.c
        stmt = sa.select(r.uid, r.secret_hash, r.disabled, r.expires_at).where(r.name == name)
        if uid is not None:
            stmt = stmt.where(r.uid == uid)
        with self.db.read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        live = not row.disabled and (row.expires_at is None or row.expires_at > now())
        return RobotLogin(row.uid, row.secret_hash, live)

    def exists(self, conn: sa.Connection, name: str) -> bool:
        return conn.execute(sa.select(s.robots.c.id).where(s.robots.c.name == name)).first() is not None

    def actions_in(self, conn: sa.Connection, name: str, project_id: int) -> list[str]:
        """The registry actions robot `name` holds in the project (none if it is not scoped to it)."""
        rp = s.robot_permissions.c
        actions = conn.execute(
            sa.select(rp.actions)
            .select_from(s.robot_permissions.join(s.robots, s.robots.c.id == rp.robot_id))
            .where(s.robots.c.name == name, rp.project_id == project_id)
        ).scalar()
        return (actions or "").split(",") if actions else []

    def project_names(self, conn: sa.Connection, name: str) -> set[str]:
        """The projects robot `name` is scoped to."""
        return set(self._scopes(conn, s.robots.c.name == name))

    def _scopes(self, conn: sa.Connection, which: sa.ColumnElement[bool]) -> dict[str, str]:
        """Project name -> comma-separated actions of the robot(s) `which` selects, by project name
        (the names from ProjectService, owner of `projects`)."""
        rp = s.robot_permissions.c
        rows = conn.execute(
            sa.select(rp.project_id, rp.actions)
            .select_from(s.robot_permissions.join(s.robots, s.robots.c.id == rp.robot_id))
            .where(which)
        ).all()
        names = self.projects.names_by_id(conn, (pid for pid, _ in rows))
        return dict(sorted((names[pid], actions) for pid, actions in rows if pid in names))

    def _load(self, conn: sa.Connection, name: str) -> Robot | None:
        row = conn.execute(sa.select(s.robots).where(s.robots.c.name == name)).first()
        if row is None:
            return None
        perms = self._scopes(conn, s.robots.c.id == row.id)
        return Robot(
            row.id,
            row.name,
            row.description,
            row.expires_at,
            bool(row.disabled),
            row.created_by,
            row.created_at,
            {p: a.split(",") for p, a in perms.items()},
        )

    def create(
        self,
        name: str,
        permissions: dict[str, list[str]],
        expires_at: float | None = None,
        description: str | None = None,
        creator: str | None = None,
    ) -> CreatedRobot:
        short = name.removeprefix(ROBOT_NAME_PREFIX)
        if not _NAME_RE.fullmatch(short) or len(short) > 200:
            raise InvalidInput("invalid robot name: lowercase letters and digits separated by . _ + -", {"name": name})
        if expires_at is not None and expires_at <= now():
            raise InvalidInput("expiry must be in the future")
        perms = _check_permissions(permissions)
        full = login_name(short)
        with self.db.write() as conn:
            project_ids = {}
            for project in perms:
                found = self.projects.find(conn, project)
                if found is None:
                    raise NotFound(f"project {project!r} does not exist", {"project": project})
                project_ids[project] = found.id
            robot_id, secret = gen.insert_credential(
                self.db,
                conn,
                _CREDENTIALS,
                Conflict(f"robot {full!r} already exists", {"robot": full}),
                name=full,
                description=description,
                expires_at=expires_at,
                disabled=False,
                created_by=creator,
                uid=s.new_uid(),
            )
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
        with self.db.read() as conn:
            if project is not None:
                project_id = self.projects.id_of(conn, project)
                if project_id is None:
                    return []
                rp = s.robot_permissions.c
                stmt = stmt.where(s.robots.c.id.in_(sa.select(rp.robot_id).where(rp.project_id == project_id)))
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
        secret = gen.generate(gen.ROBOT_SECRET_PREFIX)
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
