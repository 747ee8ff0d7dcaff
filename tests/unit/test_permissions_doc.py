from pathlib import Path

from dockyard.services.auth.permissions import (
    MATRIX,
    SYSTEM_MATRIX,
    Permission,
    Role,
    SystemPermission,
    allowed,
    markdown_table,
    system_allowed,
    system_markdown_table,
)

DOC = Path(__file__).parents[2] / "docs" / "access-control.md"


def test_docs_show_the_matrix_from_the_code() -> None:
    assert markdown_table() in DOC.read_text()


def test_roles_are_cumulative_and_every_permission_is_in_the_matrix() -> None:
    assert set(MATRIX) == set(Permission)
    for perm in Permission:
        held = [allowed(role, perm) for role in Role]
        assert held == sorted(held), f"{perm}: a higher role lost a permission a lower one has"
    assert not any(allowed(None, p) for p in Permission)


def test_docs_show_the_system_matrix_from_the_code() -> None:
    assert system_markdown_table() in DOC.read_text()


def test_every_system_permission_is_in_the_system_matrix() -> None:
    assert set(SYSTEM_MATRIX) == set(SystemPermission)
    assert not any(system_allowed(None, p) for p in SystemPermission)
