"""Model trials and retraining: paired scores of a candidate beside production (shadow and canary),
canary routes, and retraining jobs

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trial_scores",
        sa.Column("frame_id", sa.String(length=128), nullable=False),
        sa.Column("candidate_version", sa.String(length=64), nullable=False),
        sa.Column("product_type", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("production_version", sa.String(length=64), nullable=False),
        sa.Column("production_score", sa.Float(), nullable=False),
        sa.Column("production_defect", sa.Boolean(), nullable=False),
        sa.Column("candidate_score", sa.Float(), nullable=False),
        sa.Column("candidate_defect", sa.Boolean(), nullable=False),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("frame_id", "candidate_version"),
    )
    op.create_index("ix_trial_scores_candidate", "trial_scores", ["product_type", "candidate_version", "scored_at"])
    op.create_table(
        "model_canaries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("product_type", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("max_excess_alarm_rate", sa.Float(), nullable=False),
        sa.Column("min_frames", sa.Integer(), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_canaries_open", "model_canaries", ["product_type", "ended_at"])
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("product_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("result_version", sa.String(length=64), nullable=True),
        sa.Column("evaluation", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_training_jobs_status", "training_jobs", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_training_jobs_status", table_name="training_jobs")
    op.drop_table("training_jobs")
    op.drop_index("ix_model_canaries_open", table_name="model_canaries")
    op.drop_table("model_canaries")
    op.drop_index("ix_trial_scores_candidate", table_name="trial_scores")
    op.drop_table("trial_scores")
