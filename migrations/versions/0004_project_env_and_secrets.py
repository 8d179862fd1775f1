"""plain env on projects, and project secrets (encrypted)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import advanced_alchemy.types


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("env", sa.JSON(), server_default="{}", nullable=False))

    op.create_table(
        "project_secret",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("project_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_project_secret_project_id_project"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_secret")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_project_secret_project_id")),
    )
    with op.batch_alter_table("project_secret", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_secret_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("project_secret", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_secret_project_id"))

    op.drop_table("project_secret")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("env")
