"""The schema comes only from Alembic: upgrade, downgrade, and no drift from the models."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from service.db.migrate import PROJECT_ROOT, downgrade, upgrade
from service.db.models import compare_type, metadata
from tests.conftest import make_settings


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_upgrade_empty_then_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = tmp_path / "agentdock.db"
    upgrade(settings)
    assert {"project", "alembic_version"} <= tables(db)
    downgrade(settings, "base")
    assert tables(db) == {"alembic_version"}
    upgrade(settings)
    assert "project" in tables(db)


def test_models_and_migrations_do_not_differ(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    upgrade(settings)
    engine = create_engine(f"sqlite:///{tmp_path / 'agentdock.db'}")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": compare_type, "render_as_batch": True})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_bare_alembic_upgrade_head_uses_the_service_settings(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTDOCK_DATA_DIR": str(tmp_path / "fresh")}
    env.pop("AGENTDOCK_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "project" in tables(tmp_path / "fresh" / "agentdock.db")


def test_agentdock_migrate_command(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTDOCK_DATA_DIR": str(tmp_path / "cli")}
    env.pop("AGENTDOCK_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert '"event": "database.migrated"' in result.stdout
    assert "project" in tables(tmp_path / "cli" / "agentdock.db")
