"""covering indexes for the standings queries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_submissions_board", "submissions", ["challenge", "status", "team_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_scores_board", "scores", ["submission_id", "active", "public_score"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_scores_board", table_name="scores")
    op.drop_index("ix_submissions_board", table_name="submissions")
