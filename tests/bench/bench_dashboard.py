"""Dashboard page render times with 10M usage rows in SQLite, beside an empty-database baseline.

Builds (once; cached under ``tests/artifacts/``, shared with ``bench_dashboard_pages``) 10M
synthetic hourly usage rows from ``collector/synthetic.py`` (a year, ~1,140 rows per hour), then runs every page under
``streamlit.testing.v1.AppTest`` signed in as an admin, and prints per page:

* ``cold``: first render after ``st.cache_data.clear()`` (every query runs), median of 3;
* ``warm``: a re-render with the 5-minute cache filled (what the second visitor sees);
* ``empty``: the same page on a migrated empty database in the same run (the baseline: Streamlit
  and page overhead without data).

Demo mode pins "today" to the data's last day, so Overview reads a full month. The target is
every cold render under 1 s. Building the database takes a few minutes the first time.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from collector.core.settings import get_settings
from collector.db.migrate import open_database

TOTAL_ROWS = 10_000_000
END = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "streamlit_app.py"
#: (label, page file, URL query parameters)
PAGES: tuple[tuple[str, str, dict[str, str | list[str]]], ...] = (
    ("overview", "overview", {}),
    ("explore", "explore", {}),
    ("explore hourly (2d)", "explore", {"grain": "hour", "by": "model"}),
    ("explore hourly 7d", "explore", {"grain": "hour", "by": "model", "days": ["2026-10-25", "2026-10-31"]}),
    ("tokens", "tokens", {}),
    ("reconciliation", "reconciliation", {}),
    ("proxy", "proxy", {}),
    ("import", "import_csv", {}),
    ("data & health", "health", {}),
    ("connections", "connections", {}),
    ("users", "users", {}),
)
ADMIN = "bench-admin"


def ensure_db() -> Path:
    """The 10M-row database ``bench_dashboard_pages`` builds once under ``tests/artifacts/``."""
    from tests.bench.bench_dashboard_pages import ensure_db as shared

    return shared(TOTAL_ROWS)


def _admin(engine) -> None:  # type: ignore[no-untyped-def]
    from collector.auth.users import add_user, get_user

    if get_user(engine, ADMIN) is None:
        add_user(engine, ADMIN, "admin", "bench password 1234")


def _measure(url: str, runs: int = 3) -> dict[str, tuple[float, float]]:
    """Per page: (median cold render, warm render) in seconds."""
    import streamlit as st

    os.environ["LLM_USAGE_DATABASE_URL"] = url
    os.environ["LLM_USAGE_DEMO"] = "true"
    get_settings.cache_clear()
    out: dict[str, tuple[float, float]] = {}
    for label, page, params in PAGES:
        colds = []
        for _ in range(runs):
            st.cache_data.clear()
            colds.append(_timed_cold(page, params))
        warm = _render_warm(page, params)
        out[label] = (statistics.median(colds), warm)
    return out


def _app(page: str, params: dict):  # type: ignore[no-untyped-def]
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["auth_user"] = ADMIN
    at.run()  # the navigation (signed in); the default page is Overview
    at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(params)
    return at


def _timed_cold(page: str, params: dict) -> float:
    import streamlit as st

    at = _app(page, params)
    st.cache_data.clear()
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].value}")
    return elapsed


def _render_warm(page: str, params: dict) -> float:
    at = _app(page, params)
    at.run()  # fills the cache
    started = time.perf_counter()
    at.run()
    return time.perf_counter() - started


def main() -> None:
    """Build or reuse the 10M-row database, then print cold/warm/empty render times per page."""
    started = time.perf_counter()
    path = ensure_db()
    print(
        f"  database: {path} ({(path.with_suffix('.done')).read_text().strip()}; ready in "
        f"{time.perf_counter() - started:.1f} s this run)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        empty_url = f"sqlite:///{Path(tmp) / 'empty.db'}"
        engine = open_database(url=empty_url)
        _admin(engine)
        engine.dispose()
        empty = _measure(empty_url)
        full = _measure(f"sqlite:///{path}")
    print(f"  {'page':<20}{'10M cold':>12}{'10M warm':>12}{'empty (baseline)':>20}   target: cold < 1 s")
    for label, _page, _params in PAGES:
        cold, warm = full[label]
        print(
            f"  {label:<20}{cold * 1000:>10.0f}ms{warm * 1000:>10.0f}ms{empty[label][0] * 1000:>18.0f}ms"
            f"   {'ok' if cold < 1 else 'SLOW'}"
        )


if __name__ == "__main__":
    main()
