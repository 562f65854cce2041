"""Datastores and their objects.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datastores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("grantable", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_datastores_owner_name"),
    )
    op.create_table(
        "datastore_objects",
        sa.Column("datastore_id", sa.Integer,
                  sa.ForeignKey("datastores.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("class_name", sa.String(256), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("length", sa.Integer, nullable=True),
        sa.Column("row_count", sa.Integer, nullable=True),
        sa.Column("col_count", sa.Integer, nullable=True),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("datastore_objects")
    op.drop_table("datastores")
