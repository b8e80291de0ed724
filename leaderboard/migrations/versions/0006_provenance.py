"""submission provenance: the notebook, the environment and the tables a kernel read

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leaderboard.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submission_provenance",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("notebook_name", sa.String(length=255), nullable=True),
        sa.Column("notebook_sha256", sa.String(length=64), nullable=True),
        sa.Column("notebook_size", sa.BigInteger(), nullable=True),
        sa.Column("notebook_stored", sa.String(length=64), nullable=True),
        sa.Column("outputs_stripped", sa.Boolean(), nullable=False),
        sa.Column("packages_sha256", sa.String(length=64), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("python", sa.String(length=32), nullable=False),
        sa.Column("reads", sa.JSON(), nullable=False),
        sa.Column("recorded_at", leaderboard.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"]),
        sa.PrimaryKeyConstraint("submission_id"),
    )


def downgrade() -> None:
    op.drop_table("submission_provenance")
