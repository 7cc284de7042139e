"""Inspection labels: an inspector's confirmed defect, false alarm, missed defect or confirmed good part

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KINDS = ("CONFIRMED_DEFECT", "FALSE_ALARM", "MISSED_DEFECT", "CONFIRMED_GOOD")


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("inspection_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.Enum(*KINDS, name="labelkind", native_enum=False, length=32), nullable=False),
        sa.Column("defect_class", sa.String(length=40), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("labelled_by", sa.String(length=100), nullable=False),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"]),
        sa.PrimaryKeyConstraint("inspection_id"),
    )
    op.create_index("ix_labels_labelled_at", "labels", ["labelled_at"])


def downgrade() -> None:
    op.drop_index("ix_labels_labelled_at", table_name="labels")
    op.drop_table("labels")
