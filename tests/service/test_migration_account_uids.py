"""Migration 0009 (auth) gives existing users and robots distinct uids, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from dockyard.db.engine import MIGRATIONS, Database
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'old.db'}")
        yield db
        db.dispose()
    else:
        url, admin = create_pg_database("dockyard_mig")
        db = Database(url)
        yield db
        db.dispose()
        drop_pg_database(url, admin)


def _upgrade(db: Database, revision: str) -> None:
    with db.engine.connect() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def test_existing_accounts_get_distinct_uids(empty_database: Database) -> None:
    db = empty_database
    _upgrade(db, "0005")
    with db.engine.begin() as conn:
        for name in ("admin", "alice"):
            conn.exec_driver_sql(
                "INSERT INTO users (username, is_admin, disabled, created_at, provider, can_create_projects) "
                f"VALUES ('{name}', false, false, 1, 'local', false)"
            )
        conn.exec_driver_sql(
            "INSERT INTO robots (name, secret_hash, disabled, created_at) VALUES ('robot$ci', 'x', false, 1)"
        )
        conn.exec_driver_sql("INSERT INTO login_failures (key, failures, window_start) VALUES ('user:admin', 3, 1)")
    _upgrade(db, "head")
    with db.engine.connect() as conn:
        uids = [u for (u,) in conn.exec_driver_sql("SELECT uid FROM users UNION ALL SELECT uid FROM robots")]
        left = conn.exec_driver_sql("SELECT count(*) FROM login_failures").scalar()
    assert len(uids) == 3 and len(set(uids)) == 3 and all(len(u) == 32 for u in uids)
    assert left == 0
