"""rounds: a team's region, and the teams each round advanced

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leaderboard.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("region", sa.String(length=64), nullable=True))
    op.create_table(
        "advancements",
        sa.Column("round", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("from_round", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("basis", sa.JSON(), nullable=False),
        sa.Column("at", leaderboard.models.UTCDateTime(), nullable=False),
        sa.Column("by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("round", "team_id"),
    )
    op.create_index("ix_advancements_from_round", "advancements", ["from_round"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_advancements_from_round", table_name="advancements")
    op.drop_table("advancements")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("region")
