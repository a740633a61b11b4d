"""Browser sessions (the UI's cookie login) and failed login attempts (rate limiting).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(12), sa.ForeignKey("server_tokens.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),  # not a secret from the server: sent back to the page
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_server_sessions_token_id", "server_sessions", ["token_id"])
    op.create_table(
        "server_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_server_login_failures_client_at", "server_login_failures", ["client", "at"])


def downgrade() -> None:
    op.drop_index("ix_server_login_failures_client_at", "server_login_failures")
    op.drop_table("server_login_failures")
    op.drop_index("ix_server_sessions_token_id", "server_sessions")
    op.drop_table("server_sessions")
