"""Alembic environment: applies the orchestrator's migrations to its own tables only.

The same file runs from a source checkout (`alembic upgrade head`) and from the installed wheel
(`orchestrator.store.database.migrate`), so everything it needs comes from the package.
"""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy import create_engine, pool, text

from orchestrator.config import load_settings
from orchestrator.store.database import alembic_options, normalize_url, resolve_database_url
from orchestrator.store.schema import metadata

config = context.config
# `migrate()` passes its URL as an attribute; the alembic command line takes `-x url=...`.
explicit_url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

# Several workers may start at once and each run `migrate()`: one transaction-scoped advisory
# lock makes them take turns, and the later ones find the schema already at head.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('orchestrator_alembic_version'))"


def migration_url() -> str:
    """The URL given (by `migrate()` or `-x url=...`), else the settings' one: the alembic
    command line is an edge, so the environment is read here, not in the store."""
    if explicit_url:
        return normalize_url(explicit_url)
    return resolve_database_url(load_settings())


def run_migrations_offline() -> None:
    """Emit the SQL (`alembic upgrade head --sql`) instead of running it."""
    context.configure(
        url=migration_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **alembic_options(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(migration_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                transaction_per_migration=False,
                **alembic_options(),
            )
            with context.begin_transaction():
                connection.execute(text(_MIGRATION_LOCK))
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
