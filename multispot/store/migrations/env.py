"""Alembic's entry point. ``PostgresStore`` runs it with its own connection (in
``config.attributes["connection"]``), inside the transaction that holds the migration lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from multispot.store.postgres import METADATA

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command line: `alembic -x url=postgresql+psycopg://... upgrade head`
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).begin() as connection:
        context.configure(connection=connection, target_metadata=METADATA)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=METADATA)
    with context.begin_transaction():
        context.run_migrations()
