"""Alembic's environment: runs on the connection app.store.schema passes in (no alembic.ini,
no URL here)."""

from alembic import context

from app.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through app.store.schema (upgrade, alembic_config)")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite's ALTER
with context.begin_transaction():
    context.run_migrations()
