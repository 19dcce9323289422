"""Alembic's entry point: migrate the connection :mod:`..schema` hands over."""

from alembic import context

from coflux.remote.server.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it; "batch" mode does that for us.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
