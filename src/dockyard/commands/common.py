"""What every command shares: settings and services as the CLI actor (domain errors as one line), the
`command` decorator that hands a command its services, and the small input/output helpers."""

from __future__ import annotations

import getpass
import inspect
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec

import typer
from rich.console import Console
from rich.table import Table

from dockyard.config import ConfigError, Settings, load_settings
from dockyard.services.audit import Actor, acting_as
from dockyard.services.errors import RegistryError
from dockyard.wiring import Services, build_services, prepare_database

console = Console()
P = ParamSpec("P")


def settings_or_exit(**overrides: object) -> Settings:
    """The settings, or the configuration problem on standard error and exit status 2."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise usage_error(str(exc)) from None


def usage_error(message: str) -> typer.Exit:
    """Say `message` on standard error; the caller raises the result (exit status 2: bad usage)."""
    typer.echo(f"dockyard: {message}", err=True)
    return typer.Exit(2)


@contextmanager
def services() -> Iterator[Services]:
    """The service graph on the configured database, acting as `cli:<os user>`. A domain error raised
    inside becomes one readable line and exit status 1."""
    try:
        svc = build_services(settings_or_exit())
        try:
            prepare_database(svc)  # no implicit `admin`: the first `serve` makes it, and prints its password
            with acting_as(Actor(f"cli:{getpass.getuser()}", "system")):
                yield svc
        finally:
            svc.close()
    except RegistryError as exc:
        typer.echo(f"dockyard: {exc.message}", err=True)
        raise typer.Exit(1) from None


def with_services(fn: Callable[Concatenate[Services, P], str | None]) -> Callable[P, None]:
    """`fn(svc, ...)` as a command: it runs against `services()`, and the text it returns is printed
    once the services are closed. Typer sees the parameters after `svc` (their names, types and
    defaults are the command's arguments and options)."""

    @wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with services() as svc:
            said = fn(svc, *args, **kwargs)
        if said is not None:
            typer.echo(said)

    signature = inspect.signature(fn, eval_str=True)
    run.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
    return run


def command(
    group: typer.Typer, name: str
) -> Callable[[Callable[Concatenate[Services, P], str | None]], Callable[P, None]]:
    """Register `fn(svc, ...)` as `group name`, run `with_services`."""

    def register(fn: Callable[Concatenate[Services, P], str | None]) -> Callable[P, None]:
        return group.command(name)(with_services(fn))

    return register


def read_password(value: str | None, stdin: bool, generate: bool = False) -> str:
    if generate:
        return secrets.token_urlsafe(18)
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if value:
        return value
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def expiry(days: float | None) -> float | None:
    return time.time() + days * 86400 if days else None


def table(columns: list[str], rows: list[list[Any]]) -> None:
    out = Table(*columns)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    console.print(out)
