"""Users, API tokens and project memberships.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled_at", sa.Float),
    )
    op.create_table(
        "server_tokens",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("server_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sa.Column("parent_id", sa.String(12)),
    )
    op.create_index("ix_server_tokens_user_id", "server_tokens", ["user_id"])
    op.create_table(
        "server_members",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("server_users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_members")
    op.drop_index("ix_server_tokens_user_id", "server_tokens")
    op.drop_table("server_tokens")
    op.drop_table("server_users")
