"""The team server: the tracking store behind a REST API, with users, tokens and project roles.

``app.py`` builds the FastAPI application; ``auth.py`` keeps users, hashed API tokens and
project memberships; ``migrations/`` holds the Alembic migrations of the server's own tables
(``striate server upgrade`` applies them; a server refuses to start on a database that needs one).
"""
