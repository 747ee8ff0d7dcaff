"""Shared fixtures: a database per engine (SQLite file, real PostgreSQL) and blob stores.

PostgreSQL tests use DOCKYARD_TEST_POSTGRES_URL (default: the local trust-auth server). They skip
when it is unreachable, unless DOCKYARD_REQUIRE_ALL is set (CI), where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from dockyard.db import schema
from dockyard.db.engine import Database
from dockyard.logs import configure as configure_logging
from dockyard.services.auth import passwords

if TYPE_CHECKING:
    from tests.support.s3 import S3Server
    from tests.support.slapd import SlapdServer

PG_URL = os.environ.get("DOCKYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_ALL = bool(os.environ.get("DOCKYARD_REQUIRE_ALL"))


def missing(reason: str) -> None:
    """Skip locally, fail in CI: a test that needs a real component must run there."""
    if REQUIRE_ALL:
        pytest.fail(f"required test dependency missing: {reason}")
    pytest.skip(reason)


def create_pg_database(prefix: str) -> tuple[str, sa.Engine]:
    """A new, empty PostgreSQL database: its URL, and an admin engine to drop it with."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            # A test database need not survive a crash: commits do not wait for the disk (about half
            # the time of each commit on a busy machine).
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        missing(f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}")
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False), admin


def drop_pg_database(url: str, admin: sa.Engine) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """argon2id at its smallest cost (one pass over 8 KiB) in the test process. The production setting
    (passwords.make_hasher: OWASP's 19 MiB, two passes) costs tens of milliseconds per hash or
    verification, more on a busy 2-core CI machine, and the in-process tests create and log in
    hundreds of accounts. Still real argon2id hashes and verifications (what the tests check). The
    server processes of the end-to-end tests keep the production setting, and test_passwords checks
    that setting itself."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        passwords.dummy_hash.cache_clear()
        yield
    passwords.dummy_hash.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def dockyard_logging() -> None:
    """The test process logs as every Dockyard process does (dockyard.logs). Unconfigured, structlog
    renders an exception with rich, local variables included: 15-20 s for the one 500 of
    test_an_internal_error_is_a_problem_too, and the locals of every frame in the output. Until now the
    format also depended on the order of the tests (the first in-process CLI command configured it)."""
    configure_logging()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per session; each test gets a copy (migrating takes ~0.5 s)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "dockyard.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    return path


def copy_sqlite(template: Path, target: Path) -> None:
    """A consistent copy through SQLite's backup API (whatever is still in the template's WAL included)."""
    with contextlib.closing(sqlite3.connect(template)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    url, admin = create_pg_database("dockyard_test")
    migrated = Database(url)
    migrated.migrate()
    migrated.dispose()
    yield url
    drop_pg_database(url, admin)


def _empty_pg(db: Database) -> None:
    """Every table emptied and every sequence restarted. DELETE rather than TRUNCATE: a test leaves a
    few rows, and TRUNCATE of the 30 tables (new files for each) took 0.5-1 s per test, DELETE 0.05 s.
    All in one round trip (one statement each, children before the rows they refer to): on a busy
    machine each round trip waits for the server process to be scheduled, which made fifty of them
    take 0.4-0.5 s."""
    with db.engine.begin() as conn:
        quote = conn.dialect.identifier_preparer
        sequences = conn.exec_driver_sql("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
        statements = [f"DELETE FROM {quote.format_table(t)}" for t in reversed(schema.metadata.sorted_tables)]
        statements += [f"ALTER SEQUENCE {quote.quote(name)} RESTART" for (name,) in sequences.all()]
        conn.exec_driver_sql(";\n".join(statements))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on each engine."""
    if request.param == "sqlite":
        copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path / "dockyard.db")
        db = Database(f"sqlite:///{tmp_path / 'dockyard.db'}")
    else:
        db = Database(request.getfixturevalue("pg_database_url"))
        _empty_pg(db)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    """A real OpenLDAP server with the helper's users and groups, one per test module."""
    from tests.support.slapd import SlapdServer, slapd_available

    reason = slapd_available()
    if reason:
        missing(reason)
    with SlapdServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto_server) on loopback for the whole session; each test
    takes its own bucket with `s3_server.new_bucket()`."""
    from tests.support.s3 import launch_s3, s3_available

    reason = s3_available()
    if reason:
        missing(reason)
    try:
        server = launch_s3()
    except RuntimeError as exc:
        missing(str(exc))
    yield server
    server.stop()
