from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import collector.db.tables  # noqa: F401
from collector.db.migrate import current_revision, head_revision, open_database, upgrade


def test_migrations_reach_head_and_match_the_models(db_url):
    engine = open_database(url=db_url)
    assert current_revision(engine) == head_revision()
    assert upgrade(engine) is False  # nothing pending the second time
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []


def test_a_new_sqlite_file_takes_the_larger_page_size_and_an_old_one_keeps_its_own(tmp_path):
    import sqlite3

    from sqlalchemy import text

    from collector.db.engine import SQLITE_PAGE_SIZE

    new = tmp_path / "new.db"
    engine = open_database(url=f"sqlite:///{new}")
    engine.dispose()
    assert sqlite3.connect(new).execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE != 4096

    old = tmp_path / "old.db"
    raw = sqlite3.connect(old)
    raw.execute("PRAGMA page_size=4096")
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE before_upgrade (x INTEGER)")
    raw.close()
    engine = open_database(url=f"sqlite:///{old}")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO before_upgrade VALUES (1)"))
        assert conn.execute(text("PRAGMA page_size")).scalar() == 4096
    engine.dispose()
    assert current_revision(open_database(url=f"sqlite:///{old}")) == head_revision()
