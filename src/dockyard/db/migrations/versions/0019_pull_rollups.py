"""The exposure report's reads at scale: pulls counted per digest, day, project and identity or
source address (filled from the audit log's pulls), and a digest's tag history by tag.

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = ("actor", "actor_kind", "provider", "source_ip")


def upgrade() -> None:
    op.create_table(
        "pull_rollups",
        sa.Column("digest", sa.String(150), nullable=False),
        sa.Column("dimension", sa.String(8), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("source_ip", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_ts", sa.Float(), nullable=False),
        sa.Column("last_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest", "dimension", "day", "project", *KEYS),
    )
    # floor(ts / 86400) as the service computes it (services/pull_rollups.day_of): the quotient can
    # round up to the next whole number for a timestamp a hair before midnight, hence the check.
    whole = "floor(ts / 86400)" if op.get_bind().dialect.name == "postgresql" else "(ts / 86400)"
    day = f"CAST({whole} AS INTEGER)"
    for dimension, kept in (("identity", ("actor", "actor_kind", "provider")), ("source", ("source_ip",))):
        keys = ", ".join(f"COALESCE({k}, '')" if k in kept else "''" for k in KEYS)
        grouped = ", ".join(f"COALESCE({k}, '')" for k in kept)
        op.execute(
            "INSERT INTO pull_rollups (digest, dimension, day, project, actor, actor_kind, provider, source_ip,"
            " count, first_ts, last_ts)"
            f" SELECT digest, '{dimension}', day, COALESCE(project, ''), {keys}, COUNT(*), MIN(ts), MAX(ts)"
            f" FROM (SELECT *, CASE WHEN ts < {day} * 86400.0 THEN {day} - 1 ELSE {day} END AS day"
            "       FROM audit_events WHERE action = 'pull' AND digest IS NOT NULL) AS pulls"
            f" GROUP BY digest, day, COALESCE(project, ''), {grouped}"
        )
    op.drop_index("ix_tag_history_digest", table_name="tag_history")
    op.drop_index("ix_tag_history_previous", table_name="tag_history")
    op.create_index("ix_tag_history_digest_tag", "tag_history", ["digest", "repository", "tag", "at", "id"])
    op.create_index("ix_tag_history_previous_tag", "tag_history", ["previous_digest", "repository", "tag", "at", "id"])


def downgrade() -> None:
    op.drop_index("ix_tag_history_previous_tag", table_name="tag_history")
    op.drop_index("ix_tag_history_digest_tag", table_name="tag_history")
    op.create_index("ix_tag_history_previous", "tag_history", ["previous_digest", "at"])
    op.create_index("ix_tag_history_digest", "tag_history", ["digest", "at"])
    op.drop_table("pull_rollups")
