"""The permission matrix: the one place that says which project role may do what (`MATRIX`), and
what the registry-wide roles may do beyond projects (`SYSTEM_MATRIX`).

Every check in the registry API and the management API goes through `allowed()` or
`system_allowed()`, asked by `AccessPolicy`; the docs render both as tables
(docs/access-control.md) and the tests walk them endpoint by endpoint.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(IntEnum):
    """Project roles, each including everything the roles below it may do."""

    GUEST = 1
    DEVELOPER = 2
    MAINTAINER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}; one of: {', '.join(r.name.lower() for r in cls)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Permission(StrEnum):
    PULL = "repository:pull"  # pull images, read repository and tag metadata
    PUSH = "repository:push"
    DELETE = "repository:delete"  # delete tags, manifests and blob links
    PROJECT_READ = "project:read"
    PROJECT_UPDATE = "project:update"  # visibility and other settings
    PROJECT_DELETE = "project:delete"
    MEMBER_READ = "member:read"
    MEMBER_MANAGE = "member:manage"
    ROBOT_READ = "robot:read"
    ROBOT_MANAGE = "robot:manage"
    TAG_POLICY_MANAGE = "tag-policy:manage"  # immutability and retention rules
    WEBHOOK_MANAGE = "webhook:manage"
    AUDIT_READ = "audit:read"  # the project's audit events
    QUARANTINE_MANAGE = "quarantine:manage"  # quarantine and release images of the project
    TRUST_MANAGE = "trust:manage"  # signature trust material (keys, certificates) and the trust policy


# The least role that holds each permission. A system administrator holds all of them everywhere.
MATRIX: dict[Permission, Role] = {
    Permission.PULL: Role.GUEST,
    Permission.PROJECT_READ: Role.GUEST,
    Permission.MEMBER_READ: Role.GUEST,
    Permission.PUSH: Role.DEVELOPER,
    Permission.DELETE: Role.MAINTAINER,
    Permission.TAG_POLICY_MANAGE: Role.MAINTAINER,
    Permission.WEBHOOK_MANAGE: Role.MAINTAINER,
    Permission.QUARANTINE_MANAGE: Role.MAINTAINER,
    Permission.TRUST_MANAGE: Role.MAINTAINER,
    Permission.ROBOT_READ: Role.MAINTAINER,
    Permission.PROJECT_UPDATE: Role.ADMIN,
    Permission.PROJECT_DELETE: Role.ADMIN,
    Permission.MEMBER_MANAGE: Role.ADMIN,
    Permission.ROBOT_MANAGE: Role.ADMIN,
    Permission.AUDIT_READ: Role.ADMIN,
}

# Registry token actions and the permission each needs.
REGISTRY_ACTIONS: dict[str, Permission] = {
    "pull": Permission.PULL,
    "push": Permission.PUSH,
    "delete": Permission.DELETE,
}
ROBOT_ACTIONS = frozenset(REGISTRY_ACTIONS)

# What anonymous callers get in a public project.
PUBLIC_PERMISSIONS = frozenset({Permission.PULL, Permission.PROJECT_READ})


class SystemRole(StrEnum):
    """Registry-wide roles, held by an identity rather than granted in a project."""

    ADMINISTRATOR = "administrator"  # a user flagged is_admin (whatever provider or credential)
    SCANNER = "scanner"  # the registry's own scanner, pulling for an external scanner adapter
    # The accounts and groups named in `security_reviewers`: the security team, who judge quarantined
    # images in every project without being members of each (a project role would need a grant per
    # project, and quarantine is the organisation's decision, not one project's).
    SECURITY_REVIEWER = "security-reviewer"


class SystemPermission(StrEnum):
    ALL_PROJECTS = "system:all-projects"  # every project permission in every project, and see them all
    CREATE_PROJECTS = "system:create-projects"  # whatever users_can_create_projects says
    LIST_CATALOG = "registry:catalog"  # GET /v2/_catalog
    MANAGE_USERS = "system:users"  # list, create, change, delete and unlock users; set others' passwords
    MANAGE_ROBOTS = "system:robots"  # list every robot, manage any robot without a project role
    READ_ALL_AUDIT = "system:audit"  # the whole audit log, not one project's
    SET_QUOTAS = "system:quotas"  # project storage quotas
    REMOVE_TAG_RULES = "system:tag-rules-remove"  # lift a tag immutability rule
    RUN_GC = "system:gc"  # garbage collection on demand
    UPDATE_VULNDB = "system:vulndb-update"  # ask for a vulnerability database update; see who asked
    READ_METRICS = "system:metrics"  # GET /metrics (its series name every project, private ones too)
    MANAGE_TRUST = "system:trust"  # system-wide signature trust material (applies to every project)
    BYPASS_PULL_GATE = "registry:bypass-pull-gate"  # pull what the scan policy blocks (to judge it)
    PULL_QUARANTINED = "registry:pull-quarantined"  # pull a quarantined image (where pulls are allowed)
    MANAGE_QUARANTINE = "system:quarantine"  # quarantine and release in any project; list them all
    READ_SYSTEM = "system:read"  # the settings in force (secrets never shown) and storage usage


# The system roles that hold each system permission.
_ADMINISTRATOR = frozenset({SystemRole.ADMINISTRATOR})
SYSTEM_MATRIX: dict[SystemPermission, frozenset[SystemRole]] = {
    SystemPermission.ALL_PROJECTS: _ADMINISTRATOR,
    SystemPermission.CREATE_PROJECTS: _ADMINISTRATOR,
    SystemPermission.LIST_CATALOG: _ADMINISTRATOR,
    SystemPermission.MANAGE_USERS: _ADMINISTRATOR,
    SystemPermission.MANAGE_ROBOTS: _ADMINISTRATOR,
    SystemPermission.READ_ALL_AUDIT: _ADMINISTRATOR,
    SystemPermission.SET_QUOTAS: _ADMINISTRATOR,
    SystemPermission.REMOVE_TAG_RULES: _ADMINISTRATOR,
    SystemPermission.RUN_GC: _ADMINISTRATOR,
    SystemPermission.UPDATE_VULNDB: _ADMINISTRATOR,
    SystemPermission.MANAGE_TRUST: _ADMINISTRATOR,
    SystemPermission.READ_METRICS: _ADMINISTRATOR,  # and the accounts named in `metrics_users` (api/metrics.py)
    # The scanner must read what it is asked to judge; nobody else, administrators included, is exempt.
    SystemPermission.BYPASS_PULL_GATE: frozenset({SystemRole.SCANNER}),
    SystemPermission.PULL_QUARANTINED: frozenset({SystemRole.ADMINISTRATOR, SystemRole.SECURITY_REVIEWER}),
    SystemPermission.MANAGE_QUARANTINE: frozenset({SystemRole.ADMINISTRATOR, SystemRole.SECURITY_REVIEWER}),
    SystemPermission.READ_SYSTEM: _ADMINISTRATOR,
}


def allowed(role: Role | None, permission: Permission) -> bool:
    return role is not None and role >= MATRIX[permission]


def permissions_of(role: Role | None) -> frozenset[Permission]:
    return frozenset(p for p in Permission if allowed(role, p))


def system_allowed(role: SystemRole | None, permission: SystemPermission) -> bool:
    return role is not None and role in SYSTEM_MATRIX[permission]


def _table(first: str, columns: list[str], rows: list[tuple[str, list[bool]]]) -> str:
    lines = [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| `{name}` | " + " | ".join("✓" if held else "-" for held in marks) + " |" for name, marks in rows]
    return "\n".join(lines)


def markdown_table() -> str:
    """The project matrix as the Markdown table shown in the docs (kept in sync by a test)."""
    return _table("permission", [r.label for r in Role], [(p.value, [allowed(r, p) for r in Role]) for p in Permission])


def system_markdown_table() -> str:
    """The system matrix as the Markdown table shown in the docs (kept in sync by a test)."""
    return _table(
        "system permission",
        [r.value for r in SystemRole],
        [(p.value, [system_allowed(r, p) for r in SystemRole]) for p in SystemPermission],
    )
