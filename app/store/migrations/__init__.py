"""Alembic migrations of the worklist store; run through app.store.schema, not alembic.ini."""
