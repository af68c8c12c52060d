"""Helpers for importer tests: fixture paths and small queries."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.core.store import USAGE
from importers.log import IMPORT_FILES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "csv"


@pytest.fixture
def fixture_path():
    def get(name: str) -> Path:
        return FIXTURES / name

    return get


def usage_rows(engine, **where):
    with engine.connect() as conn:
        stmt = select(USAGE)
        for name, value in where.items():
            stmt = stmt.where(USAGE.c[name] == value)
        return [dict(r._mapping) for r in conn.execute(stmt.order_by(USAGE.c.line_item, USAGE.c.model))]


def usage_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(USAGE)).scalar_one()


def import_file_rows(engine):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(IMPORT_FILES).order_by(IMPORT_FILES.c.id))]
