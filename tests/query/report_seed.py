"""A hand-built seed for the report tests, and an independent oracle of what a report must say.

The seed mixes every case the query layer must keep apart: api and csv and proxy sources;
billed, estimated and unpriced rows; days a billed source covers and days it does not; a billed
export without a model breakdown; a second currency (EUR); a credit (negative billed cost);
daily and hourly buckets; a non-token quantity (images); rows just outside the window.

The oracle works on the seed *records* in plain Python, applying design.md rule 5 as the design
states it, so the SQL is checked against something it shares no code with.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from collector.core.schema import TOKEN_FIELDS, UsageRecord
from collector.query.report import DIMENSION_COLUMNS, Filters, ReportResult

START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 6
WINDOW = Filters(since=START, until=START + timedelta(days=DAYS))
PRICE_VERSION = "seed-prices 1"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    """A cost with ten decimal places, as providers and the price table produce."""
    return Decimal(rng.randint(low, high)).scaleb(-10)


def _usage(
    rng: random.Random,
    *,
    provider: str,
    account: str,
    source: str,
    kind: str,
    start: datetime,
    width: timedelta = HOUR,
    basis: str = "estimated",
    currency: str = "USD",
    cost: Decimal | None = None,
    **dims: object,
) -> UsageRecord:
    inp = rng.randint(1_000, 90_000)
    cache_read = rng.randint(0, inp // 3)
    cw5 = rng.randint(0, (inp - cache_read) // 4) if provider == "anthropic" else 0
    cw1h = rng.randint(0, (inp - cache_read - cw5) // 8) if provider == "anthropic" else 0
    out = rng.randint(10, 9_000)
    reasoning = rng.randint(0, out // 2) if str(dims.get("model", "")).startswith("o") else 0
    if basis != "unpriced" and cost is None:
        cost = _money(rng, 1_000_000, 90_000_000_000)
    return UsageRecord(
        provider=provider,
        account=account,
        source=source,
        kind=kind,
        bucket_start=start,
        bucket_end=start + width,
        input_tokens=inp,
        cache_read_tokens=cache_read,
        cache_write_5m_tokens=cw5,
        cache_write_1h_tokens=cw1h,
        output_tokens=out,
        reasoning_tokens=reasoning,
        requests=rng.randint(1, 400),
        cost=cost if basis != "unpriced" else None,
        currency=currency if basis != "unpriced" else "",
        basis=basis,
        price_version=PRICE_VERSION if basis == "estimated" else "",
        source_ref=f"seed:{source}",
        **dims,  # type: ignore[arg-type]
    )


def seed_records() -> list[UsageRecord]:
    """The seed: about 700 records over 2026-10-31 .. 2026-11-07 (the window is Nov 1-6)."""
    rng = random.Random(20261101)
    recs: list[UsageRecord] = []
    hours = [START - DAY + timedelta(hours=h) for h in range(24 * (DAYS + 2))]
    for ts in hours:
        if ts.hour % 3 == 0:  # OpenAI usage API, org-a: two models, two projects (estimated)
            for model, project, key, team in (
                ("gpt-4o", "p1", "k1", "platform"),
                ("gpt-4o-mini", "p2", "k2", "growth"),
                ("o3", "p1", "k3", "platform"),
            ):
                recs.append(
                    _usage(
                        rng,
                        provider="openai",
                        account="org-a",
                        source="api",
                        kind="completions",
                        start=ts,
                        model=model,
                        project=project,
                        api_key_id=key,
                        team=team,
                        service_tier="default" if model != "o3" else "flex",
                    )
                )
        if ts.hour in (1, 13, 22):  # org-b has no billed source at all (estimated every day)
            recs.append(
                _usage(
                    rng, provider="openai", account="org-b", source="api", kind="completions", start=ts, model="gpt-4o"
                )
            )
        if ts.hour % 4 == 2:  # Anthropic usage: a priced model and one missing from the price table
            recs.append(
                _usage(
                    rng,
                    provider="anthropic",
                    account="ws-main",
                    source="api",
                    kind="messages",
                    start=ts,
                    model="claude-sonnet-4-5",
                    project="p2",
                    api_key_id="ak1",
                    team="growth",
                    user_id="u1",
                )
            )
            recs.append(
                _usage(
                    rng,
                    provider="anthropic",
                    account="ws-main",
                    source="api",
                    kind="messages",
                    start=ts,
                    basis="unpriced",
                    model="claude-future-9",
                    project="p3",
                    api_key_id="ak2",
                    team="research",
                    user_id="u2",
                )
            )
        if ts.hour % 6 == 5:  # Google billing export: billed, with tokens (csv)
            recs.append(
                _usage(
                    rng,
                    provider="google",
                    account="billing-01",
                    source="csv",
                    kind="gcp_billing",
                    start=ts,
                    basis="billed",
                    model="gemini-2.5-pro",
                    line_item="Gemini 2.5 Pro input",
                    project="p1",
                )
            )
        if ts.hour % 2 == 1:  # the proxy sees part of org-a's traffic: never added to provider numbers
            recs.append(
                _usage(
                    rng,
                    provider="openai",
                    account="org-a",
                    source="proxy",
                    kind="chat.completions",
                    start=ts,
                    model="gpt-4o",
                    project="p1",
                    api_key_id="k1",
                )
            )
        if ts.hour == 7:
            recs.append(
                _usage(
                    rng,
                    provider="openai",
                    account="org-a",
                    source="proxy",
                    kind="chat.completions",
                    start=ts,
                    basis="unpriced",
                    model="ft:gpt-4o:acme",
                    project="p1",
                    api_key_id="k1",
                )
            )
        if ts.hour == 9:  # images: a non-token quantity
            rec = _usage(
                rng, provider="openai", account="org-a", source="api", kind="images", start=ts, model="dall-e-3"
            )
            tokens = dict.fromkeys(("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens"), 0)
            recs.append(replace(rec, **tokens, quantity=Decimal(rng.randint(1, 40)), quantity_unit="images"))
        if ts.hour % 4 == 3:  # Claude Code: usage the Messages report already holds (listed apart)
            recs.append(
                _usage(
                    rng,
                    provider="anthropic",
                    account="ws-main",
                    source="api",
                    kind="claude_code",
                    start=ts,
                    model="claude-sonnet-4-5",
                    user_id="dev@example.com",
                )
            )
        for project, base in (("p1", 7_000_000_000), ("p2", 300_000_000)):  # vector stores: bytes, a level
            recs.append(
                UsageRecord(
                    provider="openai",
                    account="org-a",
                    source="api",
                    kind="vector_stores",
                    bucket_start=ts,
                    bucket_end=ts + HOUR,
                    project=project,
                    quantity=Decimal(base + 1_000_000 * ts.day),  # constant within a day, growing daily
                    quantity_unit="bytes",
                    source_ref="seed:api",
                )
            )
    days = [START - DAY + i * DAY for i in range(DAYS + 2)]
    for index, day in enumerate(days):
        if index in (1, 2, 3):  # OpenAI /costs for Nov 1-3 only: billed, by project and line item, no model
            for project in ("p1", "p2"):
                for line in ("gpt-4o, input", "gpt-4o, output"):
                    recs.append(
                        UsageRecord(
                            provider="openai",
                            account="org-a",
                            source="api",
                            kind="costs",
                            bucket_start=day,
                            bucket_end=day + DAY,
                            project=project,
                            line_item=line,
                            cost=_money(rng, 10_000_000_000, 900_000_000_000),
                            currency="USD",
                            basis="billed",
                            source_ref="seed:costs",
                        )
                    )
            # the bill's images line repeats the usage API's image count: never added to it
            recs.append(
                UsageRecord(
                    provider="openai",
                    account="org-a",
                    source="api",
                    kind="costs",
                    bucket_start=day,
                    bucket_end=day + DAY,
                    line_item="dall-e-3, images",
                    quantity=Decimal(25),
                    quantity_unit="images",
                    cost=_money(rng, 10_000_000_000, 90_000_000_000),
                    currency="USD",
                    basis="billed",
                    source_ref="seed:costs",
                )
            )
            # the same org-day also arrives in a generic CSV: billed twice, the cost API counts
            recs.append(
                _usage(
                    rng,
                    provider="openai",
                    account="org-a",
                    source="csv",
                    kind="generic",
                    start=day,
                    width=DAY,
                    basis="billed",
                    model="gpt-4o",
                    line_item="finance sheet",
                )
            )
        if index == 2:  # a credit on the bill
            recs.append(
                UsageRecord(
                    provider="openai",
                    account="org-a",
                    source="api",
                    kind="costs",
                    bucket_start=day,
                    bucket_end=day + DAY,
                    line_item="credit",
                    cost=Decimal("-1.5"),
                    currency="USD",
                    basis="billed",
                )
            )
        if index == 3:  # Anthropic cost report for Nov 3 only, with a model breakdown
            for model in ("claude-sonnet-4-5", "claude-future-9"):
                recs.append(
                    UsageRecord(
                        provider="anthropic",
                        account="ws-main",
                        source="api",
                        kind="cost_report",
                        bucket_start=day,
                        bucket_end=day + DAY,
                        model=model,
                        line_item="tokens",
                        cost=_money(rng, 10_000_000_000, 500_000_000_000),
                        currency="USD",
                        basis="billed",
                    )
                )
        # Azure cost export: daily buckets, billed in EUR, with tokens
        recs.append(
            _usage(
                rng,
                provider="azure_openai",
                account="sub-1",
                source="csv",
                kind="azure_cost",
                start=day,
                width=DAY,
                basis="billed",
                currency="EUR",
                model="gpt-4o",
                line_item="gpt-4o-0513 Inp regional Tokens",
            )
        )
        # a token-only CSV (generic template) for a model without prices
        recs.append(
            _usage(
                rng,
                provider="fireworks",
                account="acct-f",
                source="csv",
                kind="fireworks",
                start=day,
                width=DAY,
                basis="unpriced",
                model="accounts/acme/models/custom",
            )
        )
    return recs


# -- the oracle ---------------------------------------------------------------------------------


@dataclass
class Agg:
    """Tokens, money per currency and quantities of one report group."""

    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))
    money: dict[str, Decimal] = field(default_factory=dict)
    quantities: dict[str, Decimal] = field(default_factory=dict)

    def add_tokens(self, source: object) -> None:
        for name in TOKEN_FIELDS:
            self.tokens[name] += getattr(source, name)

    def add_money(self, currency: str, cost: Decimal) -> None:
        self.money[currency] = self.money.get(currency, Decimal(0)) + cost

    def add_quantities(self, quantities: dict[str, Decimal]) -> None:
        for unit, qty in quantities.items():
            if qty or unit:
                self.quantities[unit] = self.quantities.get(unit, Decimal(0)) + qty

    def normalised(self) -> tuple[object, ...]:
        money = {c: v.normalize() for c, v in self.money.items()}
        qty = {u: v.normalize() for u, v in self.quantities.items() if v}
        return (self.tokens, money, qty)


def _period(ts: datetime, grain: str | None) -> datetime | None:
    if grain is None:
        return None
    if grain == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _matches(rec: UsageRecord, f: Filters) -> bool:
    pairs = {
        "provider": f.providers,
        "account": f.accounts,
        "model": f.models,
        "project": f.projects,
        "api_key_id": f.api_keys,
        "team": f.teams,
        "source": f.sources,
        "user_id": f.users,
    }
    return all(not vals or getattr(rec, col) in vals for col, vals in pairs.items())


RANK = {"aws_cur": 1, "gcp_billing": 1, "azure_cost": 1, "fireworks": 1, "focus": 2}
SUBSET = {("anthropic", "claude_code")}
LEVELS = {"bytes"}


def _rank(source: str, kind: str) -> tuple[int, str]:
    """The precedence of billed sources as design rule 5 states it: cost API, native export, FOCUS, rest."""
    return (0 if source == "api" else RANK.get(kind, 3), f"{source}:{kind}")


def expected(
    records: list[UsageRecord], f: Filters, by: tuple[str, ...], grain: str | None, basis: str
) -> dict[tuple[object, ...], tuple[object, ...]]:
    """What a UTC report must contain: (section, dims, period, basis) -> (tokens, money, quantities)."""
    in_window = [r for r in records if f.since <= r.bucket_start < f.until]

    def day_of(r: UsageRecord) -> tuple[str, str, datetime | None]:
        return (r.provider, r.account, _period(r.bucket_start, "day"))

    def in_scope(r: UsageRecord) -> bool:  # only provider/account/source filters decide coverage
        return (
            r.source in ("api", "csv")
            and r.source in f.sources
            and (not f.providers or r.provider in f.providers)
            and (not f.accounts or r.account in f.accounts)
            and (r.provider, r.kind) not in SUBSET
        )

    billers: dict[tuple[str, str, datetime | None], set[tuple[int, str]]] = defaultdict(set)
    usage_days = set()
    for r in in_window:
        if in_scope(r):
            if r.basis == "billed":
                billers[day_of(r)].add(_rank(r.source, r.kind))
            else:
                usage_days.add(day_of(r))
    counted = {key: min(ranks)[1] for key, ranks in billers.items()}
    out: dict[tuple[object, ...], Agg] = defaultdict(Agg)
    levels: dict[tuple[object, ...], dict[str, dict[datetime, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for r in in_window:
        if not _matches(r, f):
            continue
        section = "proxy" if r.source == "proxy" else "subset" if (r.provider, r.kind) in SUBSET else "provider"
        counts_tokens = True
        if basis == "estimated":
            if r.basis == "billed":
                continue
            eff, counts = r.basis, r.basis == "estimated"
        elif section != "provider":
            if basis == "billed" and r.basis != "billed":
                continue
            eff, counts = r.basis, r.basis != "unpriced"
        elif r.basis == "billed":
            if counted.get(day_of(r)) != f"{r.source}:{r.kind}":
                continue  # another source bills this account-day and counts
            eff, counts, counts_tokens = "billed", True, day_of(r) not in usage_days
        elif day_of(r) in counted:
            eff, counts = "billed", False
        else:
            if basis == "billed":
                continue
            eff, counts = r.basis, r.basis != "unpriced"
        dims = tuple(getattr(r, DIMENSION_COLUMNS[d]) for d in by)
        key = (section, dims, _period(r.bucket_start, grain), eff)
        agg = out[key]
        if counts:
            assert r.cost is not None
            agg.add_money(r.currency, r.cost)
        if not counts_tokens:
            continue
        agg.add_tokens(r)
        if r.quantity_unit in LEVELS:
            series = levels[key][r.quantity_unit]
            series[r.bucket_start] = series.get(r.bucket_start, Decimal(0)) + r.quantity
        else:
            agg.add_quantities({r.quantity_unit: r.quantity} if r.quantity_unit else {})
    for key, units in levels.items():
        for unit, series in units.items():
            out[key].quantities[f"{unit} (avg)"] = sum(series.values(), Decimal(0)) / len(series)
    return {k: v.normalised() for k, v in out.items()}


def actual(result: ReportResult) -> dict[tuple[object, ...], tuple[object, ...]]:
    """The same shape from a report's rows (rows of one group in several currencies merged)."""
    out: dict[tuple[object, ...], Agg] = defaultdict(Agg)
    for row in result.rows:
        key = (row.section, tuple(row.dims[d] for d in result.by), row.period, row.basis)
        agg = out[key]
        agg.add_tokens(row)
        if row.cost is not None:
            agg.add_money(row.currency, row.cost)
        agg.add_quantities(row.quantities)
    return {k: v.normalised() for k, v in out.items()}
