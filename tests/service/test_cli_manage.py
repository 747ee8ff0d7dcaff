"""The operator commands, run through the real CLI against a real (SQLite) database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dockyard.cli import app
from dockyard.config import Settings
from dockyard.services.auth.permissions import markdown_table
from dockyard.wiring import build_services, prepare


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DOCKYARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DOCKYARD_ADMIN_PASSWORD", "admin-password")
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> tuple[int, str]:
        result = runner.invoke(app, list(args), input=stdin)
        return result.exit_code, result.output

    return invoke


def test_operator_sets_up_a_project_from_the_command_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("project", "create", "team-a")[0] == 0
    assert run("user", "create", "alice", "--password-stdin", stdin="alice-password\n")[0] == 0
    assert run("project", "grant", "team-a", "user:alice", "developer")[0] == 0
    code, out = run("robot", "create", "ci", "-p", "team-a:pull,push", "--expires-days", "1")
    assert code == 0 and "dyr_" in out
    robot_secret = out.split("secret (shown once): ")[1].strip()
    code, out = run("token", "create", "alice", "laptop")
    assert code == 0
    pat = out.rsplit(" ", 1)[1].strip()

    svc = build_services(Settings(data_dir=tmp_path))
    try:
        alice = svc.authenticator.authenticate("alice", "alice-password")
        assert alice is not None
        assert svc.authenticator.authenticate("alice", pat) is not None
        robot = svc.authenticator.authenticate("robot$ci", robot_secret)
        assert robot is not None and robot.is_robot
        _, perms = svc.policy.permissions(alice, "team-a")
        assert {p.value for p in perms} >= {"repository:pull", "repository:push"}
        assert "repository:delete" not in {p.value for p in perms}
    finally:
        svc.close()

    assert run("user", "disable", "alice")[0] == 0
    svc = build_services(Settings(data_dir=tmp_path))
    try:
        assert svc.authenticator.authenticate("alice", "alice-password") is None
    finally:
        svc.close()

    code, out = run("audit", "export", "--format", "jsonl", "--project", "team-a")
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert actions == ["project.create", "member.set", "robot.create"]
    assert all(json.loads(line)["actor"].startswith("cli:") for line in out.splitlines())


def test_errors_are_one_line_and_exit_non_zero(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run("project", "grant", "missing", "user:alice", "developer")
    assert code == 1 and "project 'missing' does not exist" in out
    code, out = run("project", "grant", "x", "user:alice", "owner")
    assert code == 2 and "unknown role" in out
    code, out = run("user", "create", "bad$name", "--password", "long-enough")
    assert code == 1 and "invalid user name" in out
    code, out = run("project", "permissions")
    assert code == 0 and out.strip() == markdown_table()


def test_commands_on_an_empty_database_create_no_admin(run, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Only `serve` makes `admin` (and shows its password): a management command run first used to make
    one with a generated password nobody ever saw."""
    monkeypatch.delenv("DOCKYARD_ADMIN_PASSWORD")
    assert run("project", "create", "team-a")[0] == 0
    assert run("user", "list")[0] == 0
    svc = build_services(Settings(data_dir=tmp_path))
    try:
        assert svc.users.list_users() == []
        generated = prepare(svc)  # the first serve
        assert generated and svc.authenticator.authenticate("admin", generated) is not None
    finally:
        svc.close()


def test_the_first_administrator_can_be_created_explicitly(run, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DOCKYARD_ADMIN_PASSWORD")
    code, out = run("user", "create", "root", "--admin", "--generate-password")
    assert code == 0 and "created user root" in out
    password = out.split("generated password (shown once): ")[1].strip()
    svc = build_services(Settings(data_dir=tmp_path))
    try:
        identity = svc.authenticator.authenticate("root", password)
        assert identity is not None and identity.is_admin
        assert prepare(svc) is None  # serve then makes no `admin` of its own
        assert [u.username for u in svc.users.list_users()] == ["root"]
    finally:
        svc.close()
