"""Alembic's environment for the metrics store: it runs on the connection ``migrations.upgrade`` passes in.

There is no URL and no offline mode here: the store's engine (its pool, SQLite pragmas, the lock
around the upgrade) belongs to the caller.
"""

from alembic import context

from airflow_carbon.metrics.migrations import VERSION_TABLE, MigrationError

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise MigrationError("the carbon metrics store's migrations run on an open connection: use "
                         "`airflow-carbon metrics --upgrade` or airflow_carbon.metrics.migrations.upgrade(engine)")
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
