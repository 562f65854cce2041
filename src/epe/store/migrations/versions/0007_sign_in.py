"""Organisation sign-in: where a user's password is checked, groups, automation tokens,
grants to groups.

Revision ID: 0007_sign_in
Revises: 0006_fair_share
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_sign_in"
down_revision = "0006_fair_share"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False,
                                   server_default="local"))
        batch.add_column(sa.Column("external_id", sa.String(512), nullable=True))
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("grantee_type", sa.String(8), nullable=False,
                                   server_default="user"))
        batch.drop_constraint("uq_grants", type_="unique")
        batch.create_unique_constraint(
            "uq_grants", ["object_type", "owner", "name", "grantee_type", "grantee"])
    op.create_table(
        "user_groups",
        sa.Column("user_name", sa.String(128), primary_key=True),
        sa.Column("group_name", sa.String(128), primary_key=True),
    )
    op.create_index("ix_user_groups_group", "user_groups", ["group_name"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
        sa.UniqueConstraint("owner", "name", name="uq_api_tokens_owner_name"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("user_groups")
    with op.batch_alter_table("grants") as batch:
        batch.drop_constraint("uq_grants", type_="unique")
        batch.execute("DELETE FROM grants WHERE grantee_type = 'group'")
        batch.create_unique_constraint("uq_grants", ["object_type", "owner", "name", "grantee"])
        batch.drop_column("grantee_type")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("external_id")
        batch.drop_column("source")
