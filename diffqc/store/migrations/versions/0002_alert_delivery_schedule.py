"""alert delivery schedule and line-stop request state

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("line_stop_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("line_stop_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("line_stop_at")
        batch_op.drop_column("line_stop_state")
        batch_op.drop_column("next_attempt_at")
