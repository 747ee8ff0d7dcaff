"""Engine creation, transactions and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from dockyard.db.changes import ChangeStamp, stamp_for
from dockyard.services.errors import InvalidInput

MIGRATIONS = Path(__file__).parent / "migrations"
_INT64 = 2**63 - 1
# Any constant works; it only has to be the same for every process migrating this database.
_MIGRATION_LOCK_ID = 0x646F636B


def now() -> float:
    return time.time()


# What the read caches read (services/registry/read_cache.py), plus projects, whose deletion sets
# repositories.project_id NULL through a foreign key without naming that table. A committed write to
# any other table (audit events, scans, sessions, queues …) cannot change a cached answer, so it does
# not move the change stamp: with pull audits flushed every second, moving it for every write would
# empty the caches about once a second.
CACHED_TABLES = frozenset({"repositories", "tags", "manifests", "repository_blobs", "blobs", "projects"})
_WRITE = re.compile(r'\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+"?(\w+)', re.I)
_NOT_A_WRITE = re.compile(r"\s*(?:SELECT|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|SET|SHOW)\b", re.I)


def writes_cached_table(statement: str) -> bool:
    """Whether a statement may change what a read cache holds. Unknown kinds (DDL, a CTE that
    writes, TRUNCATE …) count as changes: a needless bump costs a cache miss, a missed one a stale answer."""
    if _NOT_A_WRITE.match(statement):
        return False
    found = _WRITE.match(statement)
    return found is None or found.group(1).lower() in CACHED_TABLES


def _note_cached_writes(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
    if not conn.info.get("dockyard_cached_write") and writes_cached_table(statement):
        conn.info["dockyard_cached_write"] = True


def _unstorable(value: object) -> str | None:
    if isinstance(value, str) and "\x00" in value:
        return "text cannot contain NUL characters"
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 - 1 <= value <= _INT64:
        return "numbers must fit in 64 bits"
    return None


def _refuse_unstorable(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
    """The last line of defence against input the database cannot hold or compare: PostgreSQL
    refuses NUL in text and SQLite integers beyond 64 bits, each as a driver error (a 500). Any
    value that reaches a query this way is bad input, on both engines alike: refused as such."""
    rows = parameters if many else [parameters]
    for row in rows or ():
        for value in row.values() if isinstance(row, dict) else row or ():
            reason = _unstorable(value)
            if reason is not None:
                raise InvalidInput(reason)


class Database:
    """One engine plus the two kinds of transaction the services need.

    SQLite: WAL so readers never block on the writer, and write transactions start with
    BEGIN IMMEDIATE so two writers queue on busy_timeout instead of failing on lock upgrade.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = sa.create_engine(url, **kwargs)
        # Moves after every committed write (of any process, see db/changes.py): read caches check it.
        self.changes: ChangeStamp = stamp_for(url)
        event.listen(self.engine, "before_cursor_execute", _refuse_unstorable)
        event.listen(self.engine, "before_cursor_execute", _note_cached_writes)
        if self.is_sqlite:
            self._configure_sqlite(self.engine)

    @staticmethod
    def _configure_sqlite(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = "IMMEDIATE" if conn.get_execution_options().get("dockyard_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads. On PostgreSQL in autocommit: under READ COMMITTED every statement
        reads its own snapshot whether or not a transaction encloses it, so BEGIN and COMMIT would be
        two round trips each read bought nothing with (a page makes several reads)."""
        if self.is_sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        touched = True  # unless the transaction is seen to leave the cached tables alone
        try:
            with self.engine.connect() as conn:
                conn.info["dockyard_cached_write"] = False
                conn.execution_options(dockyard_write=True)
                try:
                    with conn.begin():
                        yield conn
                finally:
                    touched = bool(conn.info.pop("dockyard_cached_write", True))
        finally:  # after the commit (a rollback bumps too: harmless), so no reader caches the old state
            if touched:
                self.changes.bump()

    def insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """INSERT in the engine's dialect, for its ON CONFLICT clauses."""
        return (sqlite.insert if self.is_sqlite else postgresql.insert)(table)

    def insert_ignore(self, table: sa.Table, **values: Any) -> Any:
        """INSERT … ON CONFLICT DO NOTHING in the engine's dialect."""
        return self.insert(table).values(**values).on_conflict_do_nothing()

    def upsert(self, table: sa.Table, keys: list[str], **values: Any) -> sa.sql.Executable:
        """INSERT … ON CONFLICT (keys) DO UPDATE SET the other columns."""
        ins = self.insert(table).values(**values)
        updates = {k: ins.excluded[k] for k in values if k not in keys}
        return ins.on_conflict_do_update(index_elements=keys, set_=updates)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def migrate(self) -> None:
        """Bring the schema to head. Safe to call from several processes at once."""
        # Imported here: Alembic is only needed at start-up, and serving processes stay smaller without it.
        from alembic import command
        from alembic.config import Config

        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_ID})")
            try:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_ID})")
                    conn.commit()

    def dispose(self) -> None:
        self.changes.close()
        self.engine.dispose()
