"""Alembic migrations of a project's database (the same scripts for SQLite and
PostgreSQL); :mod:`..schema` runs them. ``versions/`` holds one script per
schema version, oldest first; a new one is made with ``alembic revision
--autogenerate`` against a database at the previous head (see CONTRIBUTING in
the README)."""
