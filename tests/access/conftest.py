"""People with every kind of access to one private project, for the role-by-endpoint tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dockyard.services.auth.permissions import Permission, Role
from dockyard.wiring import Services
from tests.api.conftest import ADMIN_PASSWORD, basic, registry, services  # noqa: F401 - fixtures

PROJECT = "proj"
PASSWORD = "password-123"


@dataclass(frozen=True)
class Principal:
    label: str
    headers: dict[str, str] = field(default_factory=dict)
    role: Role | None = None
    sysadmin: bool = False
    robot_actions: frozenset[str] | None = None

    @property
    def anonymous(self) -> bool:
        return not self.headers

    def holds(self, permission: Permission) -> bool:
        """What the permission matrix promises this principal in the private project PROJECT."""
        from dockyard.services.auth.permissions import MATRIX, REGISTRY_ACTIONS

        if self.sysadmin:
            return True
        if self.robot_actions is not None:
            held = {REGISTRY_ACTIONS[a] for a in self.robot_actions}
            return permission in held or (permission is Permission.PROJECT_READ and bool(held))
        return self.role is not None and self.role >= MATRIX[permission]

    def sees_project(self) -> bool:
        return self.holds(Permission.PROJECT_READ)


def make_principals(svc: Services) -> list[Principal]:
    svc.projects.create(PROJECT, public=False, creator="admin")
    people = [
        Principal("anonymous"),
        Principal("sysadmin", basic("admin", ADMIN_PASSWORD), sysadmin=True),
    ]
    svc.users.create("outsider", PASSWORD)
    people.append(Principal("outsider", basic("outsider", PASSWORD)))
    for role in Role:
        name = f"{role.label}-user"
        svc.users.create(name, PASSWORD)
        svc.projects.set_member(PROJECT, "user", name, role)
        people.append(Principal(name, basic(name, PASSWORD), role=role))
    for actions in (["pull"], ["pull", "push"], ["pull", "push", "delete"]):
        created = svc.robots.create("bot-" + "-".join(actions), {PROJECT: actions})
        people.append(
            Principal(created.robot.name, basic(created.robot.name, created.secret), robot_actions=frozenset(actions))
        )
    return people


@pytest.fixture
def principals(services: Services) -> Iterator[list[Principal]]:  # noqa: F811 - the imported fixture
    yield make_principals(services)
