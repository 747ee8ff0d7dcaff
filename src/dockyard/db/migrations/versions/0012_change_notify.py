"""PostgreSQL: the registry's tables announce their changes (NOTIFY dockyard_registry), for the read
caches of every replica (db/changes.py). SQLite needs nothing: its processes share one host.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the cached reads read: manifests by tag or digest, blob links and states, tag lists.
_TABLES = ("repositories", "tags", "manifests", "repository_blobs", "blobs")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Statement-level: one notification per statement, and PostgreSQL folds identical ones of a
    # transaction into one, delivered at commit (never for a rollback).
    op.execute(
        """
        CREATE FUNCTION dockyard_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('dockyard_registry', '');
            RETURN NULL;
        END $$
        """
    )
    for table in _TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION dockyard_registry_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS dockyard_registry_changed()")
