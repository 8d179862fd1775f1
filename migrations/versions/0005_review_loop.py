"""the review loop: a run's worktree, base branch and review state; per-project parallel runs
and test patterns

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parallel_runs", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("test_patterns", sa.JSON(), nullable=True))
    with op.batch_alter_table("workflow_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review", sa.String(length=16), nullable=False, server_default="unreviewed"))
        batch_op.add_column(sa.Column("worktree", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("base_branch", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_run", schema=None) as batch_op:
        batch_op.drop_column("base_branch")
        batch_op.drop_column("worktree")
        batch_op.drop_column("review")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("test_patterns")
        batch_op.drop_column("parallel_runs")
