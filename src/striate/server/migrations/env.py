"""Alembic environment for the server's own tables: always run on a connection striate hands in."""

from __future__ import annotations

from alembic import context

from striate.server.auth import metadata
from striate.server.migrations.env_settings import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
