"""OML Services: models, their endpoints, batch scoring jobs on a schedule and their runs.

Revision ID: 0008_models
Revises: 0007_sign_in
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_models"
down_revision = "0007_sign_in"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("model_type", sa.String(16), nullable=False),
        sa.Column("function", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("script", sa.Text, nullable=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("owner", "namespace", "name", "version", name="uq_models_name"),
    )
    op.create_table(
        "deployments",
        sa.Column("uri", sa.String(128), primary_key=True),
        sa.Column("model_id", sa.String(36), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("model_id", name="uq_deployments_model"),
    )
    op.create_table(
        "scoring_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("model_id", sa.String(36), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("input_table", sa.String(128), nullable=False),
        sa.Column("output_table", sa.String(128), nullable=False),
        sa.Column("supplemental", sa.Text, nullable=False),
        sa.Column("start_at", sa.Float, nullable=False),
        sa.Column("end_at", sa.Float, nullable=True),
        sa.Column("repeat", sa.Text, nullable=False),
        sa.Column("max_runs", sa.Integer, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("next_run", sa.Float, nullable=True),
        sa.Column("run_count", sa.Integer, nullable=False),
        sa.Column("server", sa.String(64), nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_scoring_jobs_name"),
    )
    op.create_index("ix_scoring_jobs_due", "scoring_jobs", ["enabled", "next_run"])
    op.create_table(
        "scoring_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scoring_job", sa.String(32),
                  sa.ForeignKey("scoring_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("scheduled", sa.Float, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("finished", sa.Float, nullable=True),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_scoring_runs_job", "scoring_runs", ["scoring_job", "started"])
    op.create_index("ix_scoring_runs_status", "scoring_runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_scoring_runs_status", "scoring_runs")
    op.drop_index("ix_scoring_runs_job", "scoring_runs")
    op.drop_table("scoring_runs")
    op.drop_index("ix_scoring_jobs_due", "scoring_jobs")
    op.drop_table("scoring_jobs")
    op.drop_table("deployments")
    op.drop_table("models")
