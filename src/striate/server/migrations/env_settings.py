"""Settings shared by the Alembic environment and the code that inspects migration state."""

VERSION_TABLE = "striate_server_version"
