"""Indexes for the bridge's claim of due alerts (only rows with work left, in claim order), the pruning
of delivered alerts, and retention's question which rows still refer to a blob

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WORK_LEFT = sa.text("delivery_state = 'PENDING' OR line_stop_state = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_alerts_work_left",
        "alerts",
        ["created_at", "id"],
        postgresql_where=WORK_LEFT,
        sqlite_where=WORK_LEFT,
    )
    op.create_index("ix_alerts_delivered_at", "alerts", ["delivered_at"])
    op.create_index("ix_frames_image_sha256", "frames", ["image_sha256"])
    op.create_index("ix_inspections_heatmap_uri", "inspections", ["heatmap_uri"])


def downgrade() -> None:
    op.drop_index("ix_inspections_heatmap_uri", table_name="inspections")
    op.drop_index("ix_frames_image_sha256", table_name="frames")
    op.drop_index("ix_alerts_delivered_at", table_name="alerts")
    op.drop_index("ix_alerts_work_left", table_name="alerts")
