"""Shared fixtures: a database per engine (SQLite file, real PostgreSQL) and blob stores.

PostgreSQL tests use DOCKYARD_TEST_POSTGRES_URL (default: the local trust-auth server). They skip
when it is unreachable, unless DOCKYARD_REQUIRE_ALL is set (CI), where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from dockyard.db import schema
from dockyard.db.engine import Database

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
    except sa.exc.OperationalError as exc:
        admin.dispose()
        missing(f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}")
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False), admin


def drop_pg_database(url: str, admin: sa.Engine) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    url, admin = create_pg_database("dockyard_test")
    migrated = Database(url)
    migrated.migrate()
    migrated.dispose()
    yield url
    drop_pg_database(url, admin)


def _truncate_pg(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in schema.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on each engine."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'dockyard.db'}")
        db.migrate()
    else:
        db = Database(request.getfixturevalue("pg_database_url"))
        _truncate_pg(db)
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
