"""Alembic environment: migrations run on the connection Database.migrate() hands over."""

from alembic import context

from dockyard.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` CLI use (e.g. autogenerate): build an engine from the ini URL
    import sqlalchemy as sa

    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://")
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
