"""The job queue shared by servers: holders, leases, answers; shared secrets.

Revision ID: 0005_job_leases
Revises: 0004_worker_uids
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_job_leases"
down_revision = "0004_worker_uids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("service", sa.String(8), nullable=True))
        batch.add_column(sa.Column("source", sa.Text, nullable=True))
        batch.add_column(sa.Column("pinned", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("server", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires", sa.Float, nullable=True))
        batch.create_index("ix_jobs_queue", ["status", "service", "created"])
        batch.create_index("ix_jobs_server", ["server", "status"])
    op.create_table(
        "job_answers",
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    op.drop_table("job_answers")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_server")
        batch.drop_index("ix_jobs_queue")
        for column in ("lease_expires", "server", "pinned", "source", "service"):
            batch.drop_column(column)
