"""The command modules' seam: one module per command group, and `command`, which hands a command its
services, keeps `svc` out of the command line and turns domain errors into one line and status 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dockyard.cli import app as root
from dockyard.commands import common
from dockyard.services.errors import NotFound

GROUPS = {
    "user": "users",
    "project": "projects",
    "robot": "robots",
    "token": "tokens",
    "audit": "audit",
    "storage": "storage",
    "retention": "retention",
    "vulndb": "vulndb",
    "keys": "keys",
}


@pytest.mark.parametrize("group", list(GROUPS))
def test_each_command_group_lives_in_its_own_module(group: str) -> None:
    typer_app = next(g.typer_instance for g in root.registered_groups if g.name == group)
    modules = {c.callback.__module__ for c in typer_app.registered_commands if c.callback is not None}
    assert modules == {f"dockyard.commands.{GROUPS[group]}"}


def test_subgroups_and_top_level_commands_have_their_modules() -> None:
    projects = next(g.typer_instance for g in root.registered_groups if g.name == "project")
    immutable = next(g.typer_instance for g in projects.registered_groups if g.name == "immutable")
    assert {c.callback.__module__ for c in immutable.registered_commands if c.callback} == {
        "dockyard.commands.immutability"
    }
    top = {c.name or c.callback.__name__: c.callback.__module__ for c in root.registered_commands if c.callback}
    assert top["gc"] == "dockyard.commands.gc"
    assert top["scan"] == "dockyard.commands.scan"
    assert top["scanner-adapter"] == "dockyard.commands.scanner_adapter"
    assert top["serve"] == "dockyard.cli"
    assert top["sign"] == top["verify"] == "dockyard.commands.signing"


class FakeServices:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    svc = FakeServices()
    monkeypatch.setattr(common, "settings_or_exit", lambda: None)
    monkeypatch.setattr(common, "build_services", lambda settings: svc)
    monkeypatch.setattr(common, "prepare_database", lambda s: None)
    return svc


def _app() -> typer.Typer:
    app = typer.Typer()

    @common.command(app, "greet")
    def greet(svc: Any, name: str, loud: bool = False) -> str:
        """Say hello."""
        svc.calls.append((name, loud))
        if name == "nobody":
            raise NotFound("no such person")
        return f"hello {name}" + ("!" if loud else "")

    @app.callback()
    def _root() -> None:  # a group, so that `greet` is a subcommand
        """Test app."""

    return app


def test_a_command_gets_its_services_and_prints_what_it_returns(fake: FakeServices) -> None:
    result = CliRunner().invoke(_app(), ["greet", "ada", "--loud"])
    assert (result.exit_code, result.output) == (0, "hello ada!\n")
    assert fake.calls == [("ada", True)] and fake.closed


def test_svc_is_not_a_command_line_parameter() -> None:
    greet = typer.main.get_command(_app()).commands["greet"]  # type: ignore[attr-defined]
    assert [p.name for p in greet.params] == ["name", "loud"]


def test_a_domain_error_is_one_line_and_status_1(fake: FakeServices) -> None:
    result = CliRunner().invoke(_app(), ["greet", "nobody"])
    assert (result.exit_code, result.output) == (1, "dockyard: no such person\n")
    assert fake.closed


@contextmanager
def _no_services() -> Iterator[None]:
    raise AssertionError("the database was opened")
    yield


def test_an_unknown_role_is_refused_before_the_database_is_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "services", _no_services)
    result = CliRunner().invoke(root, ["project", "grant", "team", "user:alice", "owner"])
    assert result.exit_code == 2 and "dockyard: unknown role 'owner'" in result.output


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):  # groups may load their commands lazily: ask, do not read
        yield (*prefix, name)
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):  # a group (typer's own click types, whichever they are)
            yield from _command_paths(cmd, (*prefix, name))


def test_every_command_has_a_help_page_that_renders() -> None:
    # Rich renders help text as markup: "[/variant]" in an option's help crashed `dockyard scan --help`.
    paths = list(_command_paths(typer.main.get_command(root)))
    assert ("scan",) in paths and ("user", "create") in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(root, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert "Usage" in result.output, path
