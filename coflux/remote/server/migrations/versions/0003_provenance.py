"""Provenance: the commit (and whether the tree was dirty) of each manifest and execution.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    for table in ("manifests", "executions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("git_commit", sa.String(), nullable=True))
            batch_op.add_column(sa.Column("git_dirty", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("executions", "manifests"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("git_dirty")
            batch_op.drop_column("git_commit")
