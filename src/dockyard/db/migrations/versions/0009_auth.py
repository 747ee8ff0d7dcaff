"""auth hardening: accounts named by a random uid in tokens; per-account and per-source login counters

Revision ID: 0009
Revises: 0008
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _add_uid(table: str) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite can only add a NOT NULL column with a default (and recreating these tables would cascade
    # deletes into their children); PostgreSQL adds it nullable and tightens it once filled.
    op.add_column(table, sa.Column("uid", sa.String(32), nullable=not sqlite, server_default="" if sqlite else None))
    t = sa.table(table, sa.column("id", sa.Integer), sa.column("uid", sa.String))
    conn = op.get_bind()
    for (row_id,) in conn.execute(sa.select(t.c.id)).all():
        conn.execute(sa.update(t).where(t.c.id == row_id).values(uid=uuid.uuid4().hex))
    if not sqlite:
        op.alter_column(table, "uid", nullable=False)
    op.create_index(f"ix_{table}_uid", table, ["uid"], unique=True)


def upgrade() -> None:
    _add_uid("users")
    _add_uid("robots")
    # The counters are short-lived and keyed differently now: start them afresh.
    op.execute("DELETE FROM login_failures")
    op.add_column("login_failures", sa.Column("account", sa.String(300), nullable=True))
    op.add_column("login_failures", sa.Column("refused", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_login_failures_account", "login_failures", ["account"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_account", "login_failures")
    with op.batch_alter_table("login_failures") as batch:
        batch.drop_column("refused")
        batch.drop_column("account")
    for table in ("robots", "users"):
        op.drop_index(f"ix_{table}_uid", table)
        op.drop_column(table, "uid")
