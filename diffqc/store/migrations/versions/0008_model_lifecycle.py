"""Model lifecycle: a stage per model version (candidate, shadow, production, archived) and its lineage

Existing active versions become production, the others candidates; ``active`` stays (it mirrors
stage == production for the readers of the active version).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("stage", sa.String(length=16), server_default="candidate", nullable=False))
        batch.add_column(sa.Column("parent_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("replaced_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("data_fingerprint", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("trained_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("stage_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE model_versions SET stage = 'production' WHERE active")


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for column in (
            "stage_changed_at",
            "trained_by",
            "data_fingerprint",
            "replaced_version",
            "parent_version",
            "stage",
        ):
            batch.drop_column(column)
