"""Small Streamlit helpers shared by the pages (window pickers, metric rows, empty states)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import streamlit as st

from collector.core.windows import floor_day
from collector.query.report import Filters
from dashboard import queries

DAY = timedelta(days=1)


def midnight(day: date) -> datetime:
    """UTC midnight of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def window_picker(
    key: str, default_days: int = 30, max_days: int | None = None, *, bind: bool = False
) -> tuple[datetime, datetime] | None:
    """A date range (inclusive days, UTC) as a half-open window; None until both ends are picked.

    With ``bind`` the range lives in the URL (``?days=...``), so the view can be shared.
    """
    end = floor_day(queries.as_of()).date()
    picked = st.date_input(
        "Days (UTC)",
        value=(end - timedelta(days=default_days - 1), end),
        max_value=end + timedelta(days=1),
        key=key,
        help="Both days included; times are UTC.",
        bind="query-params" if bind else None,
    )
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info("Pick the last day of the range.")
        return None
    first, last = picked
    if max_days is not None and (last - first).days + 1 > max_days:
        st.warning(f"At most {max_days} days here; showing the last {max_days}.")
        first = last - timedelta(days=max_days - 1)
    return midnight(first), midnight(last) + DAY


def no_usage(filters: Filters | None = None) -> None:
    """The empty state of a usage page: what to do to get data in."""
    where = ""
    if filters is not None:
        where = f" between {filters.since:%Y-%m-%d} and {(filters.until - DAY):%Y-%m-%d} (UTC)"
    st.info(
        f"No usage recorded{where}. Add a provider admin key with `llm-usage connections add openai` "
        "(or `anthropic`), import a billing CSV on the Import page or with `llm-usage import FILE`, "
        "or try the demo data with `make demo`.",
        icon=":material/info:",
    )
