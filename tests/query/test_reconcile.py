"""Reconciliation against the seeded database, on SQLite and PostgreSQL.

Every line is compared with :func:`oracle`, which works on the seed *records* in plain Python
(design.md rule 5 as the design states it: billed, usage x price and proxy per provider account,
UTC day and currency, compared and never added), so the SQL path shares no code with it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from collector.core.schema import UsageRecord
from collector.core.store import upsert_records
from collector.query.reconcile import NO_BREAKDOWN, reconcile
from collector.query.report import Filters
from tests.query.report_seed import START, WINDOW, seed_records

Key = tuple[datetime, str, str, str]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    upsert_records(engine, seed_records())
    return engine


def _day(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _wanted(r: UsageRecord, f: Filters) -> bool:
    pairs = {"provider": f.providers, "account": f.accounts, "model": f.models, "project": f.projects}
    return f.since <= r.bucket_start < f.until and all(not v or getattr(r, c) in v for c, v in pairs.items())


def oracle(records: list[UsageRecord], f: Filters, proxy: bool = True) -> dict[str, Any]:
    """Cells per (day, provider, account, currency) and contributor sums, from the records."""
    cells: dict[Key, dict[str, Any]] = defaultdict(
        lambda: {"billed": None, "estimated": None, "proxy": None, "unpriced": 0, "proxy_unpriced": 0}
    )
    by_model: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    by_line: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    for r in records:
        is_proxy = r.source == "proxy"
        if not _wanted(r, f) or (is_proxy and not proxy) or (not is_proxy and r.source not in f.sources):
            continue
        if r.kind == "claude_code" or (r.kind == "generic" and r.basis == "billed"):
            continue  # usage Messages already holds; a file billing days the cost API bills (never counted)
        who = (r.provider, r.account)
        if r.basis == "unpriced":  # no money: its tokens count on the price table's (USD) line
            cell = cells[(_day(r.bucket_start), *who, "USD")]
            cell["proxy_unpriced" if is_proxy else "unpriced"] += r.input_tokens + r.output_tokens
            continue
        assert r.cost is not None
        column = "billed" if r.basis == "billed" else "proxy" if is_proxy else "estimated"
        cell = cells[(_day(r.bucket_start), *who, r.currency)]
        cell[column] = (cell[column] or Decimal(0)) + r.cost
        if column == "billed":
            by_line[(*who, r.currency, r.line_item or r.model or NO_BREAKDOWN)] += r.cost
        elif column == "estimated":
            by_model[(*who, r.currency, r.model)] += r.cost
    return {"cells": dict(cells), "by_model": dict(by_model), "by_line": dict(by_line)}


def _norm(value: Decimal | None) -> Decimal | None:
    return value.normalize() if value is not None else None


def _cells_of(result: Any) -> dict[Key, dict[str, Any]]:
    return {
        (d.day, d.provider, d.account, d.currency): {
            "billed": _norm(d.billed),
            "estimated": _norm(d.estimated),
            "proxy": _norm(d.proxy),
            "unpriced": d.unpriced_tokens,
            "proxy_unpriced": d.proxy_unpriced_tokens,
        }
        for d in result.days
    }


def _normed(cells: dict[Key, dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {k: {n: _norm(v) if isinstance(v, Decimal) else v for n, v in c.items()} for k, c in cells.items()}


def test_every_line_matches_the_records(seeded: Engine) -> None:
    result = reconcile(seeded, WINDOW)
    want = oracle(seed_records(), WINDOW)
    assert _cells_of(result) == _normed(want["cells"])
    # Sorted by day, provider, account, currency; the seed has a line of every kind.
    assert [(d.day, d.provider, d.account, d.currency) for d in result.days] == sorted(want["cells"])
    kinds = {(d.billed is not None, d.estimated is not None, d.proxy is not None) for d in result.days}
    assert {(True, True, True), (True, False, False), (False, True, False), (False, False, False)} <= kinds


def test_money_of_different_currencies_stays_on_separate_lines(seeded: Engine) -> None:
    result = reconcile(seeded, WINDOW)
    azure = [d for d in result.days if d.provider == "azure_openai"]
    assert azure and {d.currency for d in azure} == {"EUR"}
    assert all(d.estimated is None and d.proxy is None and d.billed is not None for d in azure)
    assert all(d.missing == ("usage",) and d.status == "no usage data" for d in azure)
    # Unpriced usage has no currency: it stands where its estimate would be, on the USD line.
    fireworks = [d for d in result.days if d.provider == "fireworks"]
    assert fireworks and all(d.currency == "USD" and d.unpriced_tokens > 0 for d in fireworks)
    assert all(d.missing == ("billed", "usage") for d in fireworks)


def test_missing_sources_gaps_and_ratios(seeded: Engine) -> None:
    result = reconcile(seeded, WINDOW)
    with_proxy = {(d.provider, d.account, d.currency) for d in result.days if d.proxy is not None}
    assert with_proxy == {("openai", "org-a", "USD")}
    for d in result.days:
        expected = tuple(
            name
            for name, value, wanted in (
                ("billed", d.billed, True),
                ("usage", d.estimated, True),
                ("proxy", d.proxy, (d.provider, d.account, d.currency) in with_proxy),
            )
            if wanted and value is None
        )
        assert d.missing == expected, d
        assert d.status == ("complete" if not expected else "; ".join(f"no {m} data" for m in expected))
        if d.billed is not None and d.estimated is not None:
            assert d.gap == d.estimated - d.billed
            assert d.gap_ratio == (d.estimated - d.billed) / d.billed
        else:
            assert d.gap is None and d.gap_ratio is None
    # openai org-a is billed on Nov 1-3 only (its /costs export), so those days are complete.
    org_a = {d.day.day: d.status for d in result.days if (d.provider, d.account) == ("openai", "org-a")}
    assert [org_a[n] for n in (1, 2, 3)] == ["complete"] * 3
    assert org_a[4] == "no billed data"


def test_account_lines_sum_the_days_and_compare_only_paired_days(seeded: Engine) -> None:
    result = reconcile(seeded, WINDOW)
    cells = oracle(seed_records(), WINDOW)["cells"]
    for a in result.accounts:
        mine = [c for k, c in cells.items() if k[1:] == (a.provider, a.account, a.currency)]
        for column in ("billed", "estimated", "proxy"):
            values = [c[column] for c in mine if c[column] is not None]
            assert getattr(a, column) == (sum(values, Decimal(0)) if values else None), (a, column)
        paired = [c for c in mine if c["billed"] is not None and c["estimated"] is not None]
        assert a.paired_billed == sum((c["billed"] for c in paired), Decimal(0))
        assert a.paired_estimated == sum((c["estimated"] for c in paired), Decimal(0))
        assert a.days == len(mine)
    org_a = next(a for a in result.accounts if (a.provider, a.account) == ("openai", "org-a"))
    assert org_a.paired_gap_ratio == (org_a.paired_estimated - org_a.paired_billed) / org_a.paired_billed
    # Every billed day has usage, but the usage of Nov 4-6 has no bill: it is left out of the gap.
    assert org_a.paired_billed == org_a.billed
    assert org_a.estimated is not None and org_a.estimated > org_a.paired_estimated
    assert org_a.incomplete_days == 3


def test_contributors_largest_first_and_the_largest_gaps(seeded: Engine) -> None:
    result = reconcile(seeded, WINDOW)
    want = oracle(seed_records(), WINDOW)
    got_models = {(c.provider, c.account, c.currency, c.label): c.cost for c in result.estimated_by_model}
    got_lines = {(c.provider, c.account, c.currency, c.label): c.cost for c in result.billed_by_line}
    assert got_models == want["by_model"]
    assert got_lines == want["by_line"]
    assert ("openai", "org-a", "USD", "credit") in got_lines  # a credit is a contributor too (negative)
    costs = [c.cost for c in result.estimated_by_model]
    assert costs == sorted(costs, reverse=True)
    top = result.contributors("model", "openai", "org-a", "USD", n=2)
    assert len(top) == 2 and all(c.account == "org-a" for c in top) and top[0].cost >= top[1].cost
    gaps = result.largest_gaps(3)
    every = sorted((abs(d.gap) for d in result.days if d.gap is not None), reverse=True)
    assert [abs(d.gap) for d in gaps if d.gap is not None] == every[:3]


def test_filters_narrow_and_the_proxy_can_be_left_out(seeded: Engine) -> None:
    only = replace(WINDOW, providers=("openai",), accounts=("org-a",))
    result = reconcile(seeded, only)
    assert {(d.provider, d.account) for d in result.days} == {("openai", "org-a")}
    assert _cells_of(result) == _normed(oracle(seed_records(), only)["cells"])
    without = reconcile(seeded, only, proxy=False)
    assert all(d.proxy is None and "proxy" not in d.missing for d in without.days)
    assert _cells_of(without) == _normed(oracle(seed_records(), only, proxy=False)["cells"])


def test_an_empty_window_reconciles_to_nothing(seeded: Engine) -> None:
    empty = Filters(since=START.replace(year=2020), until=START.replace(year=2021))
    result = reconcile(seeded, empty)
    assert result.days == () and result.accounts == () and result.largest_gaps() == []


def test_every_line_splits_its_estimate_into_parts_and_its_gap_into_causes(seeded: Engine) -> None:
    result = reconcile(seeded, WINDOW)
    for d in result.days:
        assert sum(d.parts.values(), Decimal(0)) == (d.estimated or 0), d
        assert sum(d.causes.values(), Decimal(0)) == (d.billed or 0) - (d.estimated or 0), d
        if d.proxy is not None and d.estimated is not None:
            assert d.outside_proxy == d.estimated - d.proxy  # what the provider saw and the proxy did not
        else:
            assert d.outside_proxy is None
        if d.billed is None:  # usage with no bill is one side only, nothing else
            assert d.causes["one_sided"] == -(d.estimated or 0) and d.causes["residual"] == 0
    # The seed's one credit line (Nov 2) is named as a credit, on its day.
    credits = {(d.day, d.provider): d.causes["credits"] for d in result.days if d.causes["credits"]}
    assert credits == {(START.replace(day=2), "openai"): Decimal("-1.5")}
    # Anthropic bills the unknown claude-future-9 by model on Nov 3: its usage is unpriced, so its
    # billed amount is the "models in no price table" cause.
    nov3 = next(d for d in result.days if (d.day.day, d.provider) == (3, "anthropic") and d.billed is not None)
    future = sum(
        (r.cost for r in seed_records() if r.model == "claude-future-9" and r.basis == "billed" and r.cost is not None),
        Decimal(0),
    )
    assert nov3.causes["unpriced_models"] == future != 0
