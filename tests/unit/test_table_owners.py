"""Each table has one owning service (docs/architecture.md, "Table ownership"): only the owner's
module names the table; every other service asks the owner. Read from the source, so a new direct
access fails here before it spreads.

Covered so far: the project and account tables. A table is "named" where a module of
`src/dockyard` (outside `db/`, which defines and migrates the schema) writes `s.<table>` with
`s` bound to `dockyard.db.schema`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dockyard.db import schema

SRC = Path(__file__).parents[2] / "src" / "dockyard"

# table -> the module (relative to src/dockyard) of the service that owns it.
OWNERS: dict[str, str] = {
    "projects": "services/projects.py",
    "project_members": "services/projects.py",
    "users": "services/auth/users.py",
    "robots": "services/auth/robots.py",
    "robot_permissions": "services/auth/robots.py",
    "access_tokens": "services/auth/access_tokens.py",
}


def _schema_names(tree: ast.Module) -> set[str]:
    """The names a module binds to `dockyard.db.schema` (`from dockyard.db import schema as s`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "dockyard.db":
            names |= {a.asname or a.name for a in node.names if a.name == "schema"}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name == "dockyard.db.schema" and a.asname}
    return names


def tables_named() -> dict[str, set[str]]:
    """table -> the modules that name it."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if module.startswith("db/"):
            continue
        tree = ast.parse(path.read_text(), module)
        aliases = _schema_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                found.setdefault(node.attr, set()).add(module)
            elif isinstance(node, ast.ImportFrom) and node.module == "dockyard.db.schema":
                for alias in node.names:  # `from dockyard.db.schema import users` names it too
                    found.setdefault(alias.name, set()).add(module)
    return found


def test_the_owners_are_tables_of_the_schema() -> None:
    assert set(OWNERS) <= set(schema.metadata.tables)
    assert all((SRC / module).is_file() for module in OWNERS.values())


@pytest.mark.parametrize("table", sorted(OWNERS))
def test_only_the_owner_names_its_table(table: str) -> None:
    named = tables_named().get(table, set())
    assert OWNERS[table] in named, "the owner itself should read its table"
    assert named == {OWNERS[table]}, f"{table} is reached past its owner {OWNERS[table]}"
