"""Alembic environment.

The URL comes from ``config.attributes["database_url"]`` when the service runs migrations
(``agentdock migrate`` / ``agentdock serve``), and otherwise from the same settings the
service reads, so a bare ``alembic upgrade head`` works too. Batch mode is on for SQLite.
"""

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.db.models import compare_type, metadata
from service.settings import Settings

config = context.config


def database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    settings = Settings.from_env()
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.database_url


def configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=compare_type,
        **kwargs,
    )


def run_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_sync(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_sync)
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    run_offline()
elif connection is not None:
    run_sync(connection)
else:
    asyncio.run(run_online())
