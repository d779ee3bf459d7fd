"""Alembic environment: runs the migrations on the dealcoach database.

The connection comes from ``config.attributes["connection"]`` when the app runs
the migrations (``app.db.upgrade_database``); otherwise from ``sqlalchemy.url``
when set on the config, else from the settings (``DEALCOACH_DATABASE_URL`` or
the SQLite file in ``DEALCOACH_DATA_DIR``).
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import JSON
from sqlalchemy.engine import Connection

from app.config import Settings, load_settings
from app.db import StrEnumType, UTCDateTime, create_engine_for, migration_connection
from app.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the app's column types as plain SQLAlchemy types, so migrations never import app."""
    if type_ == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, StrEnumType):
            return f"sa.String(length={obj.length})"
        if isinstance(obj, JSON) and "postgresql" in obj._variant_mapping:
            # app.db.JSONType; Alembic's own rendering leaves ``Text`` unimported.
            autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
            return (
                f"sa.JSON(none_as_null={obj.none_as_null})"
                f'.with_variant(postgresql.JSONB(none_as_null={obj.none_as_null}), "postgresql")'
            )
    return False


def _settings() -> Settings:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return Settings(database_url=url)
    return load_settings()


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=render_item,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) without a database."""
    url = _settings().resolved_database_url
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine_for(_settings())
    try:
        with migration_connection(engine) as own_connection:
            _run_on(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
