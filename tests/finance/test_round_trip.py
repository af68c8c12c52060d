"""Export -> re-import keeps every basis, total and token count, and into the same database adds nothing.

The source database holds the mix the report test seeds (``tests/query/report_seed.py``): billed
cost API rows with a credit, estimates, unpriced usage, a second currency, a billing export, a
generic file billing days the cost API bills (an overlap), Claude Code (usage Messages already
holds) and vector-store bytes (a level). It is exported as FOCUS CSV and as FOCUS Parquet with
``llm-usage export`` and imported back with ``llm-usage import``, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from collector.app import app
from collector.core.ingest import ingest_records
from collector.core.settings import get_settings
from collector.core.store import USAGE
from collector.db.migrate import open_database
from collector.query.report import Filters, report
from tests.query.report_seed import WINDOW, seed_records

FIELDS = ("provider", "account", "source", "kind", "basis", "currency", "cost", "price_version", "model_raw")
COUNTS = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens")


def rows_of(engine) -> dict[bytes, tuple]:
    """Every non-proxy usage row by key: what the row says (the proxy is never exported)."""
    cols = [USAGE.c.record_key, *(USAGE.c[f] for f in (*FIELDS, *COUNTS, "reasoning_tokens", "requests"))]
    cols += [USAGE.c.quantity, USAGE.c.quantity_unit, USAGE.c.model]
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(*cols).where(USAGE.c.source != "proxy"))}


def summary_of(engine) -> list[tuple]:
    """The report by provider, model and day, on every basis: what a reader sees."""
    out = []
    for basis in ("preferred", "billed", "estimated"):
        rep = report(engine, Filters(WINDOW.since, WINDOW.until), by=("provider", "model"), grain="day", basis=basis)
        out += [
            (basis, r.section, r.period, tuple(r.dims.values()), r.basis, r.currency, r.cost,
             *(getattr(r, c) for c in COUNTS), tuple(sorted(r.quantities.items())))
            for r in rep.rows
        ]  # fmt: skip
        out.append((basis, "overlaps", tuple(o.describe() for o in rep.overlaps)))
    return sorted(out, key=repr)


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("fmt", ["focus", "parquet"])
def test_export_reimports_as_the_same_rows_into_a_fresh_and_into_the_same_database(
    db_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    source = open_database(url=db_url)
    ingest_records(source, seed_records())  # through the ingest path, as every source writes
    before_rows, before_summary = rows_of(source), summary_of(source)
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    out = tmp_path / f"export.{'csv' if fmt == 'focus' else 'parquet'}"
    cli("export", "--format", fmt, "--from", "2026-10-31", "--to", "2026-11-07", "-o", str(out))

    # Into the same database: every record is already there with the same values.
    same = cli("import", str(out))
    assert "every record was already stored with the same values: nothing added" in same
    assert rows_of(source) == before_rows and summary_of(source) == before_summary

    # Into a fresh database: the same rows, keys and figures, basis by basis.
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", fresh_url)
    get_settings.cache_clear()
    cli("db", "upgrade")  # a new installation is created by `run` or `db upgrade`, never by an import
    cli("import", str(out))
    fresh = open_database(url=fresh_url)
    assert rows_of(fresh) == before_rows
    assert summary_of(fresh) == before_summary
