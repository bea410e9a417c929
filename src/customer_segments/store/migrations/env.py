"""Alembic environment. Migrations run on a connection handed over by
customer_segments.store.migrate (so they work inside the service's event loop)."""

from alembic import context

from customer_segments.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `customer-segments migrate --database-url URL`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
