"""Apply Alembic migrations. Synchronous: run it before the server's event loop starts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

from service.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(settings: Settings) -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = settings.database_url
    return config


def _outside_event_loop(fn: Callable[[], None]) -> None:
    """Alembic's env.py calls ``asyncio.run``: called from a running loop, run it in a thread
    (which blocks that loop until the migration is done; the server never does this)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn).result()


def upgrade(settings: Settings, revision: str = "head") -> None:
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    _outside_event_loop(lambda: command.upgrade(alembic_config(settings), revision))


def downgrade(settings: Settings, revision: str = "base") -> None:
    _outside_event_loop(lambda: command.downgrade(alembic_config(settings), revision))
