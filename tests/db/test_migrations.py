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
