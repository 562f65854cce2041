"""The host uid of each user's sandboxed workers.

Revision ID: 0004_worker_uids
Revises: 0003_audit
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_worker_uids"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_uids",
        sa.Column("uid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("assigned", sa.Float, nullable=False),
        sa.UniqueConstraint("owner", name="uq_worker_uids_owner"),
    )


def downgrade() -> None:
    op.drop_table("worker_uids")
