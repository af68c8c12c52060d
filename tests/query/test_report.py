"""The shared query layer against the seeded database, on SQLite and PostgreSQL.

Every figure is compared with :func:`tests.query.report_seed.expected`, computed from
the seed records in plain Python, to the cent and the token.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

import collector.query.report as query_module
from collector.core.store import upsert_records
from collector.query.health import freshness
from collector.query.report import OTHER_LABEL, Filters, QueryError, daily_spend, parse_by, report
from tests.query.report_seed import DAY, PRICE_VERSION, START, WINDOW, actual, expected, seed_records

DIM_SETS: list[tuple[str, ...]] = [
    (),
    ("provider",),
    ("provider", "account"),
    ("provider", "model"),
    ("project", "api_key"),
    ("team", "user", "service_tier"),
    ("source", "kind", "line_item"),
]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    upsert_records(engine, seed_records())
    return engine


@pytest.mark.parametrize("basis", ["preferred", "billed", "estimated"])
def test_every_basis_and_dims_match_the_seed(seeded: Engine, basis: str) -> None:
    recs = seed_records()
    for by in DIM_SETS:
        for grain in (None, "day"):
            result = report(seeded, WINDOW, by=by, grain=grain, basis=basis)
            assert actual(result) == expected(recs, WINDOW, by, grain, basis), (basis, by, grain)


@pytest.mark.parametrize("grain", ["hour", "week", "month"])
def test_other_grains_match_the_seed(seeded: Engine, grain: str) -> None:
    recs = seed_records()
    result = report(seeded, WINDOW, by=("provider", "model"), grain=grain)
    assert actual(result) == expected(recs, WINDOW, ("provider", "model"), grain, "preferred")


def test_totals_per_currency_and_basis_to_the_cent(seeded: Engine) -> None:
    recs = [r for r in seed_records() if WINDOW.since <= r.bucket_start < WINDOW.until]
    # The seed's generic CSV bills org-a days the cost API bills too: kept, never counted.
    overlapped = [r for r in recs if r.kind == "generic"]
    assert overlapped and all(r.basis == "billed" for r in overlapped)
    counted = [r for r in recs if r.kind != "generic" and r.source != "proxy" and r.kind != "claude_code"]
    covered = {(r.provider, r.account, r.bucket_start.date()) for r in counted if r.basis == "billed"}
    billed_usd = sum((r.cost for r in counted if r.basis == "billed" and r.currency == "USD"), Decimal(0))
    billed_eur = sum((r.cost for r in counted if r.currency == "EUR" and r.cost is not None), Decimal(0))
    estimated = sum(
        (
            r.cost
            for r in counted
            if r.basis == "estimated" and r.cost is not None
            and (r.provider, r.account, r.bucket_start.date()) not in covered
        ),
        Decimal(0),
    )  # fmt: skip
    result = report(seeded, WINDOW, by=("provider",))
    totals = result.totals()
    assert totals[("USD", "billed")].cost == billed_usd
    assert totals[("EUR", "billed")].cost == billed_eur
    assert totals[("USD", "estimated")].cost == estimated
    unpriced = totals[("", "unpriced")]
    assert unpriced.cost is None, "unpriced usage is never $0"
    # Tokens: every counted row's tokens land in exactly one total; Claude Code's are apart.
    assert sum(s.input_tokens for s in totals.values()) == sum(r.input_tokens for r in counted)
    subset = result.totals("subset")
    assert sum(s.input_tokens for s in subset.values()) == sum(r.input_tokens for r in recs if r.kind == "claude_code")
    # Images come from the usage API, never added to the bill's image line; bytes are a level.
    images = sum(r.quantity for r in recs if r.kind == "images")
    assert sum(s.quantities.get("images", Decimal(0)) for s in totals.values()) == images
    assert all("bytes" not in s.quantities for s in totals.values())
    # (on days the bill covers the level sits under ``billed``, elsewhere under ``unpriced``)
    hours: dict[bool, dict[datetime, Decimal]] = {True: {}, False: {}}
    for r in recs:
        if r.kind == "vector_stores":
            side = hours[(r.provider, r.account, r.bucket_start.date()) in covered]
            side[r.bucket_start] = side.get(r.bucket_start, Decimal(0)) + r.quantity
    averages = {sum(h.values(), Decimal(0)) / len(h) for h in hours.values()}
    assert {s.quantities["bytes (avg)"] for s in totals.values() if "bytes (avg)" in s.quantities} == averages
    assert result.price_versions == (PRICE_VERSION,)
    assert result.proxy_totals() == {}
    assert any(n.startswith("billed twice: openai account org-a") for n in result.notes)


def test_unpriced_rows_are_listed_with_quantities_never_as_zero(seeded: Engine) -> None:
    result = report(seeded, WINDOW, by=("provider", "model"), basis="estimated")
    unpriced = [r for r in result.rows if r.basis == "unpriced"]
    # Vector stores (no model, bytes only) are unpriced too: no token price applies to them.
    assert {r.dims["model"] for r in unpriced} == {"claude-future-9", "accounts/acme/models/custom", ""}
    for row in unpriced:
        assert row.cost is None and (row.input_tokens > 0 or "bytes (avg)" in row.quantities)
    assert all(r.cost is not None for r in result.rows if r.basis == "estimated")
    images = [r for r in result.rows if r.dims["model"] == "dall-e-3"]
    assert len(images) == 1 and images[0].quantity_unit == "images" and images[0].quantity > 0


def test_preferred_uses_billed_where_covered_and_says_so(seeded: Engine) -> None:
    result = report(seeded, WINDOW, by=("provider", "account"), grain="day")
    rows = [r for r in result.rows if r.section == "provider"]
    bases = {(r.dims["provider"], r.dims["account"], r.period.day): r.basis for r in rows if r.cost is not None}
    assert bases[("openai", "org-a", 1)] == "billed"  # /costs covers Nov 1-3
    assert bases[("openai", "org-a", 4)] == "estimated"
    assert bases[("openai", "org-b", 1)] == "estimated"  # no billed source for org-b
    assert bases[("anthropic", "ws-main", 3)] == "billed"
    assert bases[("anthropic", "ws-main", 2)] == "estimated"
    # On a billed day the unpriced model's tokens sit in the billed row, which has the charge.
    day3 = [r for r in rows if r.dims["provider"] == "anthropic" and r.period.day == 3]
    assert [r.basis for r in day3] == ["billed"]


def test_billed_day_without_breakdown_shows_tokens_without_cost(seeded: Engine) -> None:
    result = report(seeded, WINDOW, by=("model",), basis="billed", grain="day")
    gpt4o_day1 = [r for r in result.rows if r.dims["model"] == "gpt-4o-mini" and r.period == START]
    assert len(gpt4o_day1) == 1
    row = gpt4o_day1[0]
    assert row.basis == "billed" and row.cost is None and row.input_tokens > 0
    assert any("no charge of their own" in n for n in result.notes)


def test_model_filter_keeps_billed_coverage(seeded: Engine) -> None:
    """A model filter must not turn a billed day into an estimated one (parts add up)."""
    f = replace(WINDOW, models=("gpt-4o",))
    recs = seed_records()
    result = report(seeded, f, by=("provider", "account"), grain="day")
    assert actual(result) == expected(recs, f, ("provider", "account"), "day", "preferred")
    day1 = [r for r in result.rows if r.dims["account"] == "org-a" and r.period == START]
    assert [r.basis for r in day1] == ["billed"]


def test_filters_narrow_like_the_oracle(seeded: Engine) -> None:
    recs = seed_records()
    cases = [
        replace(WINDOW, providers=("anthropic",)),
        replace(WINDOW, accounts=("org-b", "sub-1")),
        replace(WINDOW, projects=("p1",), teams=("platform",)),
        replace(WINDOW, api_keys=("ak2",)),
        replace(WINDOW, users=("u1",)),
        replace(WINDOW, sources=("csv",)),
        replace(WINDOW, sources=("api",)),
        Filters(since=START + DAY, until=START + 3 * DAY),
    ]
    for f in cases:
        for basis in ("preferred", "billed", "estimated"):
            result = report(seeded, f, by=("provider", "model"), basis=basis)
            assert actual(result) == expected(recs, f, ("provider", "model"), None, basis), (f, basis)


def test_proxy_rows_only_when_asked_and_kept_apart(seeded: Engine) -> None:
    recs = seed_records()
    without = report(seeded, WINDOW, by=("provider",))
    assert {r.section for r in without.rows} == {"provider", "subset"}
    f = replace(WINDOW, sources=("api", "csv", "proxy"))
    with_proxy = report(seeded, f, by=("provider",))
    assert actual(with_proxy) == expected(recs, f, ("provider",), None, "preferred")
    # Provider numbers are unchanged by asking for the proxy.
    assert with_proxy.totals() == without.totals()
    proxy = with_proxy.proxy_totals()
    expected_proxy = sum(
        (
            r.cost
            for r in recs
            if r.source == "proxy" and r.cost is not None and WINDOW.since <= r.bucket_start < WINDOW.until
        ),
        Decimal(0),
    )
    assert proxy[("USD", "estimated")].cost == expected_proxy
    assert proxy[("", "unpriced")].cost is None
    assert any("never added" in n for n in with_proxy.notes)


def test_tz_regroups_hourly_data_and_keeps_daily_buckets_on_utc_days(seeded: Engine) -> None:
    f = Filters(
        since=datetime(2026, 11, 2, tzinfo=UTC) - timedelta(hours=9),
        until=datetime(2026, 11, 3, tzinfo=UTC) - timedelta(hours=9),
    )
    result = report(seeded, f, by=("provider", "account"), grain="day", tz="Asia/Seoul", basis="estimated")
    recs = seed_records()
    # Hourly org-b rows between 2026-11-01T15:00Z and 2026-11-02T15:00Z are Seoul's Nov 2.
    org_b = [r for r in recs if r.account == "org-b" and f.since <= r.bucket_start < f.until]
    rows = [r for r in result.rows if r.dims["account"] == "org-b"]
    assert len(rows) == 1
    assert rows[0].period is not None and rows[0].period.isoformat() == "2026-11-02T00:00:00+09:00"
    assert rows[0].cost == sum((r.cost for r in org_b if r.cost is not None), Decimal(0))
    assert rows[0].input_tokens == sum(r.input_tokens for r in org_b)
    # The fireworks export has daily buckets: Seoul's Nov 2 takes the UTC day Nov 2 whole.
    fw = [r for r in result.rows if r.dims["provider"] == "fireworks"]
    fw_rec = [r for r in recs if r.provider == "fireworks" and r.bucket_start == datetime(2026, 11, 2, tzinfo=UTC)]
    assert [r.input_tokens for r in fw] == [fw_rec[0].input_tokens]
    assert any("UTC days" in n and "Asia/Seoul" in n for n in result.notes)


def test_top_folds_the_rest_without_changing_totals(seeded: Engine) -> None:
    full = report(seeded, WINDOW, by=("provider", "model"))
    top = report(seeded, WINDOW, by=("provider", "model"), top=2)
    assert top.totals() == full.totals()
    named = {tuple(r.dims.values()) for r in top.rows if r.section == "provider" and OTHER_LABEL not in r.dims.values()}
    assert len(named) == 2
    assert any(r.dims == {"provider": OTHER_LABEL, "model": OTHER_LABEL} for r in top.rows)


def test_empty_window_gives_no_rows(seeded: Engine) -> None:
    f = Filters(since=datetime(2025, 1, 1, tzinfo=UTC), until=datetime(2025, 2, 1, tzinfo=UTC))
    result = report(seeded, f, by=("provider",))
    assert result.rows == [] and result.empty and result.totals() == {}


def test_daily_spend_matches_the_report(seeded: Engine) -> None:
    spend = daily_spend(seeded, WINDOW)
    result = report(seeded, WINDOW, by=("provider", "account"), grain="day")
    money = [r for r in result.rows if r.cost is not None and r.section == "provider"]
    assert len(spend) == len(money)
    assert sum(s.cost for s in spend if s.currency == "USD") == sum(r.cost for r in money if r.currency == "USD")
    assert spend == sorted(spend, key=lambda s: (s.day, s.provider, s.account, s.basis, s.currency))
    assert all(s.day.tzinfo is not None for s in spend)


def test_freshness_reports_newest_bucket_per_source(seeded: Engine) -> None:
    fresh = {(f.source, f.provider, f.account, f.kind): f for f in freshness(seeded)}
    recs = seed_records()
    for key, item in fresh.items():
        ends = [r.bucket_end for r in recs if (r.source, r.provider, r.account, r.kind) == key]
        assert item.newest_bucket_end == max(ends), key
    assert len(fresh) == len({(r.source, r.provider, r.account, r.kind) for r in recs})


def test_freshness_of_an_empty_database(engine: Engine) -> None:
    assert freshness(engine) == []


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(QueryError, match=r"^--by: unknown dimension 'colour'; accepted: provider"):
        parse_by("provider,colour")
    with pytest.raises(QueryError, match="only one time grain"):
        parse_by("day,month")
    assert parse_by("provider, model ,day") == (("provider", "model"), "day")
    with pytest.raises(QueryError, match=r"^--until:"):
        Filters(since=START, until=START)
    with pytest.raises(QueryError, match=r"^--source: unknown source 'ftp'"):
        Filters(since=START, until=START + DAY, sources=("ftp",))
    with pytest.raises(QueryError, match=r"^--since: must be a timezone-aware"):
        Filters(since=datetime(2026, 1, 1), until=START)  # noqa: DTZ001


def test_report_rejects_bad_options(sqlite_engine: Engine) -> None:
    with pytest.raises(QueryError, match=r"^--basis: unknown basis 'list'; accepted: preferred, billed, estimated"):
        report(sqlite_engine, WINDOW, basis="list")
    with pytest.raises(QueryError, match=r"^--by: unknown time grain 'year'"):
        report(sqlite_engine, WINDOW, grain="year")
    with pytest.raises(QueryError, match=r"^--tz: unknown time zone 'Mars/Olympus'"):
        report(sqlite_engine, WINDOW, tz="Mars/Olympus")
    with pytest.raises(QueryError, match=r"^--top:"):
        report(sqlite_engine, WINDOW, by=("provider",), top=0)


def test_price_versions_probe_on_large_windows(seeded: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the exact-scan limit, versions come from one estimated row per day, and a note says so."""
    exact = report(seeded, WINDOW, by=("provider",))
    assert exact.price_versions == (PRICE_VERSION,)
    assert not any("one estimated row per day" in n for n in exact.notes)
    monkeypatch.setattr(query_module, "EXACT_PRICE_VERSION_ROWS", 0)
    probed = report(seeded, WINDOW, by=("provider",))
    assert probed.price_versions == (PRICE_VERSION,)
    assert any("one estimated row per day" in n for n in probed.notes)
    assert actual(probed) == actual(exact)
    billed = report(seeded, WINDOW, basis="billed")
    assert billed.price_versions == ()


def test_window_off_midnight_reads_hourly_rows_like_the_oracle(seeded: Engine) -> None:
    """A window that does not start at a UTC midnight cannot use the daily rollup; same answer."""
    recs = seed_records()
    f = Filters(since=START + timedelta(hours=10), until=START + 2 * DAY + timedelta(hours=5))
    for basis in ("preferred", "billed", "estimated"):
        for by, grain in ((("provider", "account"), None), (("model",), "day"), ((), "hour")):
            result = report(seeded, f, by=by, grain=grain, basis=basis)
            assert actual(result) == expected(recs, f, by, grain, basis), (basis, by, grain)


def test_freshness_since_keeps_only_recent_groups(seeded: Engine) -> None:
    everything = freshness(seeded)
    recent = freshness(seeded, since=START + 6 * DAY)
    assert recent and len(recent) < len(everything)
    assert {(f.source, f.provider, f.account, f.kind) for f in recent} < {
        (f.source, f.provider, f.account, f.kind) for f in everything
    }
    # Anthropic's cost report stops on Nov 3: not among the groups with data from Nov 7 on.
    assert ("api", "anthropic", "ws-main", "cost_report") not in {
        (f.source, f.provider, f.account, f.kind) for f in recent
    }
    assert all(f in everything for f in recent)


def test_seed_is_valid_and_mixed() -> None:
    recs = seed_records()
    assert {r.source for r in recs} == {"api", "csv", "proxy"}
    assert {r.basis for r in recs} == {"billed", "estimated", "unpriced"}
    assert {r.currency for r in recs if r.cost is not None} == {"USD", "EUR"}
    assert any(r.cost is not None and r.cost < 0 for r in recs)
    assert len({r.record_key for r in recs}) == len(recs), "natural keys must be unique"
