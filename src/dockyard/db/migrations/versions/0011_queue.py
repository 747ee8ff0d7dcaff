"""one durable work queue (queue_items); scans move onto it: image_scans keeps results and status only

Revision ID: 0011
Revises: 0010
"""

import json
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCAN_RETRIES = 3  # services/scanning/queueing.MAX_ATTEMPTS when this was written


def upgrade() -> None:
    op.create_table(
        "queue_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("available_after", sa.Float(), nullable=False),
        sa.Column("processing_expires", sa.Float(), nullable=True),
        sa.Column("retries_remaining", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_items")),
        sa.UniqueConstraint("queue", "key", name=op.f("uq_queue_items_queue_key")),
    )
    op.create_index("ix_queue_items_queue", "queue_items", ["queue", "state", "available_after"], unique=False)
    # Scans waiting or running when this runs become queue items: none is lost by the move.
    conn = op.get_bind()
    scans = sa.table(
        "image_scans",
        sa.column("digest", sa.String),
        sa.column("repository", sa.String),
        sa.column("status", sa.String),
        sa.column("requested", sa.Boolean),
        sa.column("queued_at", sa.Float),
    )
    items = sa.table(
        "queue_items",
        sa.column("queue", sa.String),
        sa.column("key", sa.String),
        sa.column("body", sa.Text),
        sa.column("state", sa.String),
        sa.column("available_after", sa.Float),
        sa.column("retries_remaining", sa.Integer),
        sa.column("created_at", sa.Float),
    )
    waiting = conn.execute(
        sa.select(scans.c.digest, scans.c.repository, scans.c.requested, scans.c.queued_at).where(
            scans.c.status.in_(["queued", "scanning"])
        )
    ).all()
    t = time.time()
    rows = [
        {
            "queue": "scan",
            "key": r.digest,
            "body": json.dumps({"repository": r.repository, "digest": r.digest, "requested": bool(r.requested)}),
            "state": "available",
            "available_after": r.queued_at,
            "retries_remaining": _SCAN_RETRIES,
            "created_at": t,
        }
        for r in waiting
    ]
    if rows:
        conn.execute(sa.insert(items), rows)
    conn.execute(sa.update(scans).where(scans.c.status == "scanning").values(status="queued"))
    with op.batch_alter_table("image_scans", schema=None) as batch_op:
        batch_op.drop_column("claim_expires")
        batch_op.drop_column("attempts")
        batch_op.drop_column("requested")


def downgrade() -> None:
    with op.batch_alter_table("image_scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("claim_expires", sa.Float(), nullable=True))
    op.drop_index("ix_queue_items_queue", table_name="queue_items")
    op.drop_table("queue_items")
