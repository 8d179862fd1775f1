"""The advanced-alchemy configuration, built once from settings."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def install_sqlite_pragmas(engine: AsyncEngine) -> None:
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)


def database_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    config = SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        create_all=False,  # the schema comes only from Alembic migrations
        before_send_handler="autocommit",
        session_config=AsyncSessionConfig(expire_on_commit=False),
        engine_config=EngineConfig(pool_pre_ping=False),
    )
    install_sqlite_pragmas(config.get_engine())
    return config
