"""The migrations build exactly the schema the code declares, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dockyard.db import schema
from dockyard.db.engine import Database


def _declared_for(dialect: str) -> Any:
    """Leave out what the schema declares for another engine only (`Index.ddl_if(dialect=…)`, e.g.
    PostgreSQL's trigram indexes): alembic compares them whatever the engine."""

    def include(obj: Any, _name: Any, _type: Any, _reflected: Any, _compare_to: Any) -> bool:
        only = getattr(obj, "_ddl_if", None)
        return only is None or only.dialect in (None, dialect)

    return include


def test_migrated_database_matches_the_declared_schema(database: Database) -> None:
    with database.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": _declared_for(conn.dialect.name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), schema.metadata)
    assert diff == []
