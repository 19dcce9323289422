"""The Coflux server: FastAPI routes over per-project orchestrators and SQLite/PostgreSQL."""
