"""Control-chart state per line and product type (updated incrementally by the bridge, read by the
gateway), and the reason of a NOT_INSPECTED verdict

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spc_charts",
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("product_type", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("last_captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_inspection_id", sa.String(length=128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("line_id", "product_type"),
    )
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("not_inspected_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("not_inspected_reason")
    op.drop_table("spc_charts")
