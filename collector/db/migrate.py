"""Schema migrations with Alembic, applied by every command that opens the database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from collector.core.settings import Settings, get_settings
from collector.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no ``alembic.ini`` needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    """The newest migration shipped with this version."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> bool:
    """Apply pending migrations; returns True when anything was applied."""
    if current_revision(engine) == head_revision():
        return False
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


def open_database(settings: Settings | None = None, url: str | None = None) -> Engine:
    """The engine for the configured database, migrated to the newest schema."""
    settings = settings or get_settings()
    engine = make_engine(url or settings.resolved_database_url())
    upgrade(engine)
    return engine
