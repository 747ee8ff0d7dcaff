"""scan claims that expire; background duties run on request

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_expires", sa.Float(), nullable=True))
    op.create_table(
        "duty_runs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_duty_runs")),
    )


def downgrade() -> None:
    op.drop_table("duty_runs")
    with op.batch_alter_table("image_scans", schema=None) as batch_op:
        batch_op.drop_column("claim_expires")
