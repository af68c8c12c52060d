"""Money never overflows: huge amounts import exactly or are refused cleanly, and reads keep working.

SQLite stores money as 64-bit integers of 10**-10 units (about 922 million per value). A CSV cell
may carry up to :data:`importers.base.MONEY_LIMIT` (100 million) and a stored row, after summing
repeated lines, up to :data:`collector.core.sqltypes.MAX_MONEY`; sums over many rows are exact at
any volume (the report sums the high and low 32 bits apart); a day's total of one rollup group past
what SQLite holds is refused at import time, naming the file and the limit. Each case then opens the report,
the Overview and Explore (real AppTest runs of the pages) on the same database, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit as st

from collector.core.settings import Settings, get_settings
from collector.core.sqltypes import MAX_MONEY
from collector.db.migrate import open_database
from collector.query.report import Filters, report
from dashboard import queries
from importers.base import MONEY_LIMIT
from importers.service import import_file
from tests.dashboard.conftest import NOW, app

DAY = datetime(2026, 11, 18, tzinfo=UTC)
#: The largest amount a CSV cell may hold.
CELL = MONEY_LIMIT - Decimal("0.01")
PAYER = "999988887777"


def generic(tmp_path: Path, rows: list[tuple[str, str, str]], name: str = "big.csv") -> Path:
    """The generic template: (date, model, cost) rows of one xAI account."""
    text = "date,provider,model,account,cost,currency\n" + "".join(f"{d},xai,{m},team-1,{c},USD\n" for d, m, c in rows)
    path = tmp_path / name
    path.write_text(text)
    return path


def cur(tmp_path: Path, cost: str, lines: int) -> Path:
    """CUR lines of one Bedrock usage type in one hour, told apart only by their resource (one rollup group)."""
    head = (
        "bill_payer_account_id,line_item_usage_start_date,line_item_usage_end_date,line_item_product_code,"
        "product_product_name,line_item_usage_type,line_item_resource_id,line_item_unblended_cost,"
        "line_item_currency_code\n"
    )
    body = "".join(
        f"{PAYER},{DAY:%Y-%m-%dT%H:%M:%SZ},{DAY + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ},AmazonBedrock,"
        f"Amazon Bedrock,USE1-Claude4.6Sonnet-input-tokens,arn:aws:bedrock:profile/{i},{cost},USD\n"
        for i in range(lines)
    )
    path = tmp_path / "cur.csv"
    path.write_text(head + body)
    return path


def pages_work(engine) -> None:
    """The Overview and Explore render without an exception (a viewer account is created)."""
    from collector.auth.users import add_user

    add_user(engine, "viewer", "viewer", "a long enough password 1")
    at = app("viewer")
    assert not at.exception, at.exception
    at.switch_page("app_pages/explore.py").run()
    assert not at.exception, at.exception


def test_sums_past_a_trillion_are_exact(db_url, tmp_path, monkeypatch):
    """10,080 rows just under the per-cell limit on distinct models and days: about 1.008e12, to the last digit."""
    engine = open_database(url=db_url)
    start = DAY - timedelta(days=29)
    rows = [(f"{start + timedelta(days=i % 30):%Y-%m-%d}", f"model-{i}", str(CELL)) for i in range(10_080)]
    result = import_file(generic(tmp_path, rows), engine=engine, settings=Settings(), who="test")
    assert result.status == "imported", result.summary()
    total = report(engine, Filters(start, DAY + timedelta(days=1))).totals()[("USD", "billed")].cost
    assert total == 10_080 * CELL == Decimal("1007999999899.2")
    _pages(monkeypatch, db_url, engine)


def test_a_cell_past_the_limit_is_refused_naming_line_column_and_limit(db_url, tmp_path, monkeypatch):
    engine = open_database(url=db_url)
    path = generic(tmp_path, [(f"{DAY:%Y-%m-%d}", "grok-4", "1.00"), (f"{DAY:%Y-%m-%d}", "grok-3", "922337204")])
    result = import_file(path, engine=engine, settings=Settings(), who="test")
    assert result.status == "failed"
    (issue,) = result.issues
    assert (issue.file, issue.line, issue.column, issue.value) == ("big.csv", 3, "cost", "922337204")
    assert "out of range (±100,000,000)" in issue.rule
    assert report(engine, Filters(DAY, DAY + timedelta(days=1))).empty  # nothing half-imported
    _pages(monkeypatch, db_url, engine)


def test_rows_of_one_key_summing_past_the_limit_are_refused_not_a_traceback(db_url, tmp_path, monkeypatch):
    engine = open_database(url=db_url)
    rows = [(f"{DAY:%Y-%m-%d}", "grok-4", str(CELL))] * 10  # one key: summed, as documented
    result = import_file(generic(tmp_path, rows), engine=engine, settings=Settings(), who="test")
    assert result.status == "failed"
    (issue,) = result.issues  # the tenth line would take the row past 900 million
    assert issue.line == 11 and issue.column == "cost" and f"per-row limit of ±{MAX_MONEY:,}" in issue.rule
    assert report(engine, Filters(DAY, DAY + timedelta(days=1))).empty
    _pages(monkeypatch, db_url, engine)


def test_a_day_of_one_group_past_what_sqlite_holds(db_url, tmp_path, monkeypatch):
    """Ten lines of one group and hour at the per-row limit: refused on SQLite, exact on PostgreSQL."""
    engine = open_database(url=db_url)
    result = import_file(cur(tmp_path, str(CELL), 10), engine=engine, settings=Settings(), who="test")
    window = Filters(DAY, DAY + timedelta(days=1))
    if engine.dialect.name == "sqlite":
        assert result.status == "failed"
        (issue,) = result.issues
        assert issue.file == "cur.csv" and "exceeds what SQLite stores exactly" in issue.rule
        assert "922,337,203" in issue.rule and "PostgreSQL" in issue.rule
        assert report(engine, window).empty
    else:
        assert result.status == "imported", result.summary()
        assert report(engine, window).totals()[("USD", "billed")].cost == 10 * CELL
    _pages(monkeypatch, db_url, engine)


def _pages(monkeypatch: pytest.MonkeyPatch, db_url: str, engine) -> None:
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    monkeypatch.setattr(queries, "as_of", lambda: NOW)
    st.cache_data.clear()
    try:
        pages_work(engine)
    finally:
        st.cache_data.clear()
        queries._engine.clear()
