"""Sharing one server fairly: per-user limits, table sizes, job result sizes and
scripts, the usage of runs.

Revision ID: 0006_fair_share
Revises: 0005_job_leases
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_fair_share"
down_revision = "0005_job_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result_bytes", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("script", sa.String(300), nullable=True))
        batch.drop_index("ix_jobs_queue")
        batch.create_index("ix_jobs_queue", ["status", "service", "owner", "created"])
        batch.create_index("ix_jobs_owner_status", ["owner", "status", "result_bytes"])
    op.create_table(
        "user_limits",
        sa.Column("user_name", sa.String(128), primary_key=True),
        sa.Column("running_jobs", sa.Integer, nullable=True),
        sa.Column("waiting_jobs", sa.Integer, nullable=True),
        sa.Column("memory", sa.BigInteger, nullable=True),
        sa.Column("storage", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "table_sizes",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "run_usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("script", sa.String(300), nullable=True),
        sa.Column("service", sa.String(8), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("wall_seconds", sa.Float, nullable=False),
        sa.Column("cpu_seconds", sa.Float, nullable=False),
        sa.Column("peak_memory", sa.BigInteger, nullable=False),
        sa.Column("input_rows", sa.BigInteger, nullable=False),
        sa.Column("input_bytes", sa.BigInteger, nullable=False),
        sa.Column("output_bytes", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
    )
    op.create_index("ix_run_usage_started", "run_usage", ["started"])
    op.create_index("ix_run_usage_user_started", "run_usage", ["user_name", "started"])


def downgrade() -> None:
    op.drop_index("ix_run_usage_user_started", "run_usage")
    op.drop_index("ix_run_usage_started", "run_usage")
    op.drop_table("run_usage")
    op.drop_table("table_sizes")
    op.drop_table("user_limits")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner_status")
        batch.drop_index("ix_jobs_queue")
        batch.create_index("ix_jobs_queue", ["status", "service", "created"])
        batch.drop_column("script")
        batch.drop_column("result_bytes")
