"""the application track: entries with versions, jurors' assignments, conflicts and scores

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leaderboard.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("created_at", leaderboard.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_applications_team_version", "applications", ["team_id", "version"], unique=True)
    op.create_index("ix_applications_code", "applications", ["code"], unique=False)
    for name in ("jury_assignments", "juror_conflicts"):
        op.create_table(
            name,
            sa.Column("juror", sa.String(length=255), nullable=False),
            sa.Column("team_id", sa.Integer(), nullable=False),
            sa.Column("at", leaderboard.models.UTCDateTime(), nullable=False),
            sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
            sa.PrimaryKeyConstraint("juror", "team_id"),
        )
    op.create_table(
        "jury_scores",
        sa.Column("juror", sa.String(length=255), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("criterion", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("at", leaderboard.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("juror", "team_id", "criterion"),
    )


def downgrade() -> None:
    op.drop_table("jury_scores")
    op.drop_table("juror_conflicts")
    op.drop_table("jury_assignments")
    op.drop_index("ix_applications_code", table_name="applications")
    op.drop_index("ix_applications_team_version", table_name="applications")
    op.drop_table("applications")
