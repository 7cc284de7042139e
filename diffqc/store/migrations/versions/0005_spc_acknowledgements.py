"""SPC signal acknowledgements: the cause and corrective action a person recorded for a signal

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spc_acknowledgements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("signal_id", sa.String(length=200), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("product_type", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("sample_index", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.String(length=500), nullable=False),
        sa.Column("corrective_action", sa.String(length=1000), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signal_id"),
    )
    op.create_index("ix_spc_acknowledgements_line", "spc_acknowledgements", ["line_id", "acknowledged_at"])


def downgrade() -> None:
    op.drop_index("ix_spc_acknowledgements_line", table_name="spc_acknowledgements")
    op.drop_table("spc_acknowledgements")
