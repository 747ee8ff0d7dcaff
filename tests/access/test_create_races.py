"""Create-if-missing under concurrency, on SQLite and PostgreSQL: 16 creators at once never fail on a
unique name, and exactly one of them creates (and audits) the row."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.audit import AuditFilter
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.provisioning import request_access
from dockyard.services.auth.scopes import Scope
from dockyard.services.errors import Conflict
from dockyard.wiring import Services, build_services, prepare
from tests.access.test_ldap import ldap_settings
from tests.access.test_oidc import oidc_registry, provider  # noqa: F401 - the strict provider and a registry using it
from tests.api.conftest import Registry, basic, make_settings
from tests.support.http import TIMEOUT
from tests.support.slapd import SlapdServer

CREATORS = 16
T = TypeVar("T")


def at_once(fn: Callable[[int], T]) -> list[T | BaseException]:
    """Run fn(0..15) in 16 threads released together; each result or the exception it raised."""
    barrier = threading.Barrier(CREATORS)

    def run(i: int) -> T | BaseException:
        barrier.wait()
        try:
            return fn(i)
        except BaseException as exc:  # reported to the test
            return exc

    with ThreadPoolExecutor(CREATORS) as pool:
        return list(pool.map(run, range(CREATORS)))


def count(db: Database, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def audited(svc: Services, action: str) -> int:
    svc.audit.flush()
    rows, _ = svc.audit.query(AuditFilter(action=action), 100)
    return len(rows)


@pytest.fixture
def services(tmp_path: Path, database: Database) -> Iterator[Services]:
    svc = build_services(make_settings(tmp_path, database), db=database)
    prepare(svc)
    yield svc


def test_concurrent_pushes_into_a_new_project_create_it_once(services: Services) -> None:
    services.users.create("dev", "dev-password", can_create_projects=True)
    dev = services.authenticator.authenticate("dev", "dev-password")
    assert dev is not None
    results = at_once(
        lambda i: request_access(
            services.policy, services.projects, dev, [Scope("repository", f"fresh/app{i}", frozenset({"pull", "push"}))]
        )
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert all(r[0].actions == {"pull", "push"} for r in results if not isinstance(r, BaseException))
    assert count(services.db, s.projects, s.projects.c.name == "fresh") == 1
    assert audited(services, "project.create") == 1
    assert services.projects.members("fresh")[0].principal == "dev"


def test_concurrent_pushes_of_different_users_into_a_new_project(services: Services) -> None:
    """One of them creates it (and may push); the others find a private project they are not in."""
    for i in range(CREATORS):
        services.users.create(f"dev{i}", "dev-password", can_create_projects=True)
    people = [Identity(f"dev{i}", can_create_projects=True) for i in range(CREATORS)]
    results = at_once(
        lambda i: request_access(
            services.policy,
            services.projects,
            people[i],
            [Scope("repository", "shared/app", frozenset({"pull", "push"}))],
        )
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sum(1 for r in results if r) == 1
    assert count(services.db, s.projects, s.projects.c.name == "shared") == 1


def test_concurrent_creates_of_one_user_robot_or_token_are_one_success_and_conflicts(services: Services) -> None:
    services.projects.create("team", creator="admin")
    services.users.create("dev", "dev-password")
    for create in (
        lambda i: services.users.create("same", "same-password"),
        lambda i: services.robots.create("same", {"team": ["pull"]}),
        lambda i: services.access_tokens.create("dev", "same"),
        lambda i: services.projects.create("same"),
    ):
        results = at_once(create)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == CREATORS - 1 and all(isinstance(f, Conflict) for f in failures), failures


def test_concurrent_first_logins_of_an_oidc_user_create_one_row(services: Services) -> None:
    """What the OIDC callback runs at a user's first login, 16 times at once."""

    def first_login(i: int) -> int:
        with services.db.write() as conn:
            return services.users.upsert_external(conn, "olivia", "oidc", "o@example.test", ["devs"]).id

    results = at_once(first_login)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(set(results)) == 1
    assert count(services.db, s.users, s.users.c.username == "olivia") == 1
    assert audited(services, "user.create") == 2  # admin at first start, olivia once


def test_concurrent_first_ldap_logins_create_one_row(
    tmp_path: Path,
    database: Database,
    slapd: SlapdServer,
) -> None:
    base = make_settings(tmp_path, database)
    svc = build_services(base.model_copy(update=ldap_settings(slapd)), db=database)
    prepare(svc)
    results = at_once(lambda i: svc.authenticator.login("alice", "alice-pass", f"192.0.2.{i}"))
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert all(not isinstance(r, BaseException) and r.identity is not None for r in results)
    assert count(database, s.users, s.users.c.username == "alice") == 1
    assert audited(svc, "user.create") == 2


def test_concurrent_first_oidc_browser_logins_create_one_user_and_show_one_secret(
    oidc_registry: Registry,  # noqa: F811 - the imported fixture
    database: Database,
) -> None:
    """16 browser logins of one new user at once, through the real flow: one user row, and exactly
    one of the answers shows the CLI secret (the one that works)."""
    reg = oidc_registry

    def browser_login(i: int) -> httpx.Response:
        browser = TestClient(reg.http.app, base_url="http://registry.test")  # its own cookie jar
        start = browser.get("/auth/oidc/login", follow_redirects=False)
        at_provider = httpx.get(start.headers["location"], follow_redirects=False, timeout=TIMEOUT)
        callback = at_provider.headers["location"]
        return browser.get(callback[callback.index("/auth/oidc/callback") :])

    results = at_once(browser_login)
    assert [r for r in results if isinstance(r, BaseException)] == []
    answers = [r for r in results if isinstance(r, httpx.Response)]
    assert [r.status_code for r in answers] == [200] * CREATORS, [r.text for r in answers if r.status_code != 200]
    secrets = [r.json()["cli_secret"] for r in answers if r.json()["cli_secret"]]
    assert len(secrets) == 1
    assert reg.http.get("/token", headers=basic("alice", secrets[0])).status_code == 200
    assert count(database, s.users, s.users.c.username == "alice") == 1
