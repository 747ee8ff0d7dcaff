"""signatures: trust material (keys, certificates) per project and system-wide, trust policies, found
signatures and their verdicts

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _material(table: str, *columns: sa.Column) -> None:
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        *columns,
        sa.Column("fingerprint", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f(f"fk_{table}_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("project_id", "name", name=op.f(f"uq_{table}_project_id_name")),
    )
    op.create_index(
        f"ix_{table}_system_name",
        table,
        ["name"],
        unique=True,
        sqlite_where=sa.text("project_id IS NULL"),
        postgresql_where=sa.text("project_id IS NULL"),
    )


def upgrade() -> None:
    _material(
        "trust_keys",
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
    )
    _material(
        "trust_certificates",
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("identities", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
    )
    op.create_table(
        "trust_policies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("require_signature", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("signed_tags", sa.Text(), server_default="[]", nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_trust_policies_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_trust_policies")),
    )
    op.create_table(
        "signatures",
        sa.Column("id", _BIGINT, autoincrement=True, nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("signature_digest", sa.String(length=150), nullable=False),
        sa.Column("subject_digest", sa.String(length=150), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("discovered_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
        sa.UniqueConstraint("repository", "signature_digest", name=op.f("uq_signatures_repository_signature_digest")),
    )
    op.create_index("ix_signatures_subject", "signatures", ["repository", "subject_digest"], unique=False)
    op.create_table(
        "signature_verdicts",
        sa.Column("id", _BIGINT, autoincrement=True, nullable=False),
        sa.Column("signature_id", _BIGINT, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("signer", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("verified_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_signature_verdicts_signature_id_signatures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_verdicts")),
        sa.UniqueConstraint("signature_id", "position", name=op.f("uq_signature_verdicts_signature_id_position")),
    )


def downgrade() -> None:
    op.drop_table("signature_verdicts")
    op.drop_index("ix_signatures_subject", table_name="signatures")
    op.drop_table("signatures")
    op.drop_table("trust_policies")
    for table in ("trust_certificates", "trust_keys"):
        op.drop_index(f"ix_{table}_system_name", table_name=table)
        op.drop_table(table)
