"""Small Streamlit helpers shared by the pages (window pickers, metric rows, empty states)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
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


def day_ranges(days: Iterable[date]) -> str:
    """``2026-11-01, 2026-11-05 .. 2026-11-07``: the days, consecutive ones as ranges."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and day - runs[-1][-1] == DAY:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(r[0].isoformat() if len(r) == 1 else f"{r[0]} .. {r[-1]}" for r in runs)


def currency_notes(*conversions: queries.Conversion, without_rate: str = "") -> None:
    """Say once for the whole view how its money was converted, and which days had no rate.

    Each read of a page converts on its own; the reader gets one caption with the rate of each
    converted day (in an expander) and one warning naming the days without a rate, never one
    note per day or per chart. ``without_rate`` replaces what the warning says happens to that money.
    """
    if not conversions:
        return
    merged = functools.reduce(queries.Conversion.merge, conversions)
    if not merged.to:
        return
    if merged.converted:
        st.caption(
            f"Money in {merged.to}: amounts billed in another currency are converted day by day, each at "
            "the rate of its own day (or the latest earlier rate), as `llm-usage report --currency`."
        )
        with st.expander(f"Exchange rates used ({merged.to})"):
            st.dataframe(queries.rates_used(merged), hide_index=True, width="stretch")
    for currency, days in sorted(merged.missing.items()):
        if days:
            fate = without_rate or f"That money is shown in {currency}, never converted at a guessed rate."
            st.warning(
                f"No {currency}->{merged.to} rate for {len(days)} day(s): {day_ranges(days)}. {fate} "
                "Add rates with `llm-usage fx import FILE` or on the Budgets page.",
                icon=":material/currency_exchange:",
            )
