"""scorer claims (who, until when), dropped invalid files, a team's recent uploads

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leaderboard.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("lease_until", leaderboard.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("file_dropped_at", leaderboard.models.UTCDateTime(), nullable=True))
    op.create_index("ix_submissions_team_created", "submissions", ["team_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_submissions_team_created", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("file_dropped_at")
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
