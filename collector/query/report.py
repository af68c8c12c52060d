"""The report: what ``llm-usage report`` prints and what every dashboard chart draws.

The module is long because the money rule below must be applied in exactly one place: the
daily and hourly reads, the time-zone regrouping, ``--top`` and the notes all serve it.

Both front ends call these functions, so the same question gets the same answer. The
dashboard's ``queries`` module only adds caching on top.

How money is chosen (design.md rule 5):

* ``preferred`` (the default): for each (provider, account, UTC day), if any *billed* row from
  an ``api`` or ``csv`` source covers it, its money is the billed rows' cost; otherwise it is the
  estimated rows' cost. Every output row carries the basis its money has. Tokens and other
  quantities always come from the usage rows themselves. On billed days a usage row whose group
  holds no billed charge (billed exports often lack a model or key breakdown) shows its tokens
  with no cost, rather than an estimate that would be added to the bill.
* ``billed``: only (provider, account, day)s a billed source covers, as above.
* ``estimated``: the price table's view: estimated rows, plus unpriced ones; billed rows left out.

Unpriced usage is always its own row (basis ``unpriced``, cost ``None``, never $0). Proxy and
OpenTelemetry rows (``source='proxy'`` / ``'otel'``) are read only when asked for, and come back
as their own rows (``section='proxy'`` / ``'otel'``), never merged into the provider numbers.

Reads use ``usage_daily`` for day/week/month grains over whole UTC days, and ``usage`` (grouped
by hour in SQL, regrouped here) for the hour grain, a time zone other than UTC, or a window that
does not fall on UTC midnights. Every statement is SQLAlchemy Core with bound parameters, and
every money, quantity and time column goes through its typed column so the result processors
turn scaled integers (SQLite) and ``NUMERIC`` (PostgreSQL) into :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    and_,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Engine

from collector.core.catalog import PROVIDERS, SUBSET_KINDS
from collector.core.gcpause import paused_gc
from collector.core.rollups import SLIM, RollupUnavailable, refresh, refresh_hourly
from collector.core.schema import HOURLY_DIMENSIONS, LEVEL_UNITS, SOURCES, TOKEN_FIELDS
from collector.core.sqltypes import MONEY_SCALE, QUANTITY_SCALE, UTCDateTime, combine_sum, exact_sum, scaled_decimal
from collector.core.store import USAGE, USAGE_DAILY, USAGE_DAILY_SLIM, USAGE_HOURLY
from collector.core.windows import DateError, floor_day, is_midnight, parse_tz
from collector.query.billing import (
    BILLING_SOURCES,
    BillingSource,
    Coverage,
    DayBill,
    Overlap,
    Preferences,
    add_money,
    decide,
    overlaps,
    preferences,
)

DIMENSIONS: tuple[str, ...] = (
    "provider",
    "account",
    "project",
    "api_key",
    "user",
    "model",
    "service_tier",
    "team",
    "source",
    "line_item",
    "kind",
)
#: Columns ``usage_hourly`` keeps: a report grouped or filtered only by these can read it.
HOURLY_COLUMNS = frozenset(HOURLY_DIMENSIONS)
#: Report dimension -> column of ``usage`` / ``usage_daily``.
DIMENSION_COLUMNS: dict[str, str] = {
    "provider": "provider",
    "account": "account",
    "project": "project",
    "api_key": "api_key_id",
    "user": "user_id",
    "model": "model",
    "service_tier": "service_tier",
    "team": "team",
    "source": "source",
    "line_item": "line_item",
    "kind": "kind",
}
GRAINS: tuple[str, ...] = ("hour", "day", "week", "month")
BASES: tuple[str, ...] = ("preferred", "billed", "estimated")
#: Sources reported as their own section, compared with the providers' numbers, never added (rule 5).
SIDE_SOURCES: tuple[str, ...] = ("proxy", "otel")
#: Report sections, in the order outputs show them: the providers' numbers; kinds that repeat
#: usage another kind already holds (:data:`collector.core.catalog.SUBSET_KINDS`); the proxy's and
#: OpenTelemetry's own views. Only ``provider`` rows are the spend; the others are never added to it.
SECTIONS: tuple[str, ...] = ("provider", "subset", *SIDE_SOURCES)
#: Provider names accepted by ``--provider`` even before any of their rows exist.
KNOWN_PROVIDERS: tuple[str, ...] = tuple(sorted(PROVIDERS))
OTHER_LABEL = "(other)"
DAY = timedelta(days=1)


class Converter(Protocol):
    """Converts an amount of one currency on one UTC day into the report's currency (rates table).

    Returns ``(amount, rate source)``, or None when no rate exists (the money then stays in its
    own currency: never 1:1).
    """

    def __call__(self, amount: Decimal, currency: str, to: str, day: date) -> tuple[Decimal, str] | None: ...


@dataclass
class _Conversion:
    """Day-by-day conversion into one currency, and what it could not convert (said once)."""

    to: str
    convert: Converter
    missing: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    sources: set[str] = field(default_factory=set)
    converted: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))

    def apply(self, cost: Decimal, currency: str, day: date) -> tuple[Decimal, str]:
        if not currency or currency == self.to:
            return cost, currency
        done = self.convert(cost, currency, self.to, day)
        if done is None:
            self.missing[currency].add(day)
            return cost, currency
        self.sources.add(done[1])
        self.converted[currency].add(day)
        return done[0], self.to

    def notes(self) -> list[str]:
        out = []
        if self.sources:
            out.append(
                f"money converted to {self.to} day by day with the rate of each day ({', '.join(sorted(self.sources))})"
            )
        for currency, days in sorted(self.missing.items()):
            first, last = min(days), max(days)
            span = first.isoformat() if first == last else f"{first} .. {last}"
            out.append(
                f"no {currency}->{self.to} rate for {len(days)} day(s) ({span}): that money is shown in {currency}"
            )
        return out


class QueryError(ValueError):
    """Bad report input; the message names the argument and the accepted values."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What to read: a half-open UTC window and optional value filters (empty = all).

    ``sources`` leaves out the proxy unless it is named: proxy traffic is compared with the
    providers' numbers, never added to them (design rule 5).
    """

    since: datetime
    until: datetime
    providers: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    sources: tuple[str, ...] = ("api", "csv")
    users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise QueryError(f"--{name}", f"must be a timezone-aware datetime, got {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.until <= self.since:
            raise QueryError("--until", f"{self.until.isoformat()} is not after --since {self.since.isoformat()}")
        if not self.sources:
            raise QueryError("--source", f"at least one source is needed; accepted: {', '.join(SOURCES)}")
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise QueryError("--source", f"unknown source {unknown[0]!r}; accepted: {', '.join(SOURCES)}")

    def value_filters(self) -> dict[str, tuple[str, ...]]:
        """Column name -> accepted values, for the filters that are set."""
        pairs = {
            "provider": self.providers,
            "account": self.accounts,
            "model": self.models,
            "project": self.projects,
            "api_key_id": self.api_keys,
            "team": self.teams,
            "source": self.sources,
            "user_id": self.users,
        }
        return {col: vals for col, vals in pairs.items() if vals}


# -- outputs --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReportRow:
    """One line of a report: a group of usage with its money on one basis.

    ``cost`` is ``None`` for unpriced usage and for usage on billed days whose group carries no
    billed charge (the charge sits in a row without that breakdown). ``quantities`` holds the
    non-token quantities by unit (images, seconds ...); ``quantity`` and ``quantity_unit`` repeat
    it when there is exactly one unit.
    """

    dims: dict[str, str]
    period: datetime | None
    cost: Decimal | None
    currency: str
    basis: str
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    quantities: dict[str, Decimal] = field(default_factory=dict)
    section: str = "provider"
    rows: int = 0
    #: The sources whose money is in :attr:`cost` (``api:costs``, ``csv:aws_cur``, ``proxy:proxy``).
    sources: set[str] = field(default_factory=set)
    #: Level units (bytes stored): unit -> {time: amount summed over the group's series}.
    levels: dict[str, dict[datetime, Decimal]] = field(default_factory=dict, repr=False)

    @property
    def cache_write_tokens(self) -> int:
        """Cache writes of both lifetimes (5 minutes + 1 hour)."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def quantity(self) -> Decimal:
        """The one non-token quantity, or 0 when there is none or more than one unit."""
        return next(iter(self.quantities.values())) if len(self.quantities) == 1 else Decimal(0)

    @property
    def quantity_unit(self) -> str:
        """The unit of :attr:`quantity`; ``''`` when none, ``'mixed'`` when several."""
        if not self.quantities:
            return ""
        return next(iter(self.quantities)) if len(self.quantities) == 1 else "mixed"


@dataclass
class Sums:
    """Totals of one (currency, basis): money, tokens and quantities."""

    cost: Decimal | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    quantities: dict[str, Decimal] = field(default_factory=dict)
    rows: int = 0
    levels: dict[str, dict[datetime, Decimal]] = field(default_factory=dict, repr=False)

    @property
    def cache_write_tokens(self) -> int:
        """Cache writes of both lifetimes."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    def add(self, row: ReportRow) -> None:
        """Add one report row (levels are averaged over time, never summed over it)."""
        if row.cost is not None:
            self.cost = row.cost if self.cost is None else self.cost + row.cost
        for name in TOKEN_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(row, name))
        for unit, qty in row.quantities.items():
            if unit not in _level_labels(row.levels):
                self.quantities[unit] = self.quantities.get(unit, Decimal(0)) + qty
        _merge_levels(self.levels, row.levels)
        _finish_levels(self.quantities, self.levels)
        self.rows += row.rows


@dataclass
class ReportResult:
    """A report: its rows, the question asked, and notes the footer must show."""

    rows: list[ReportRow]
    filters: Filters
    by: tuple[str, ...]
    grain: str | None
    basis: str
    tz: str
    price_versions: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    #: Account-days several billed sources bill, and which one counted (design rule 5).
    overlaps: list[Overlap] = field(default_factory=list)
    #: With a display currency: the UTC days each other currency had no rate (its money stayed in it).
    missing_rates: dict[str, list[date]] = field(default_factory=dict)
    #: With a display currency: the UTC days each other currency was converted on (each at that day's rate).
    converted_days: dict[str, list[date]] = field(default_factory=dict)

    def totals(self, section: str = "provider") -> dict[tuple[str, str], Sums]:
        """Sums per ``(currency, basis)`` of one section (``provider``, ``subset`` or ``proxy``).

        Money of different currencies or bases is never added together (design rule 5);
        usage on billed days without a charge of its own has currency ``''`` under ``billed``.
        """
        out: dict[tuple[str, str], Sums] = {}
        for row in self.rows:
            if row.section == section:
                out.setdefault((row.currency, row.basis), Sums()).add(row)
        return out

    def proxy_totals(self) -> dict[tuple[str, str], Sums]:
        """:meth:`totals` of the proxy rows (only present when the proxy source was asked for)."""
        return self.totals("proxy")

    @property
    def empty(self) -> bool:
        """No usage in the window for these filters."""
        return not self.rows


class DailySpend(NamedTuple):
    """One provider account's money on one UTC day, on one basis (for charts and forecasts)."""

    day: datetime
    provider: str
    account: str
    cost: Decimal
    currency: str
    basis: str


# -- validation -----------------------------------------------------------------------------------


#: A budget's or an anomaly's scope -> the :class:`Filters` field that narrows to it.
SCOPE_FILTERS = {
    "provider": "providers",
    "account": "accounts",
    "project": "projects",
    "api_key": "api_keys",
    "team": "teams",
    "model": "models",
}


def scope_filters(scope: str, value: str, since: datetime, until: datetime) -> Filters:
    """Filters for one scope value (``all`` or an unknown scope: no narrowing)."""
    field = SCOPE_FILTERS.get(scope)
    return Filters(since, until, **({field: (value,)} if field else {}))


def parse_by(text: str | Sequence[str] | None) -> tuple[tuple[str, ...], str | None]:
    """Split ``--by provider,model,day`` into dimensions and at most one grain.

    Raises:
        QueryError: unknown name, a repeated name, or two grains.
    """
    if text is None:
        return (), None
    items = text.split(",") if isinstance(text, str) else list(text)
    dims: list[str] = []
    grain: str | None = None
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name in GRAINS:
            if grain is not None:
                raise QueryError("--by", f"only one time grain is allowed, got {grain!r} and {name!r}")
            grain = name
        elif name in DIMENSIONS:
            if name in dims:
                raise QueryError("--by", f"{name!r} is given twice")
            dims.append(name)
        else:
            accepted = ", ".join((*DIMENSIONS, *GRAINS))
            raise QueryError("--by", f"unknown dimension {name!r}; accepted: {accepted}")
    return tuple(dims), grain


def _check_args(by: Sequence[str], grain: str | None, basis: str, top: int | None) -> None:
    for name in by:
        if name not in DIMENSIONS:
            raise QueryError("--by", f"unknown dimension {name!r}; accepted: {', '.join((*DIMENSIONS, *GRAINS))}")
    if len(set(by)) != len(by):
        raise QueryError("--by", "a dimension is given twice")
    if grain is not None and grain not in GRAINS:
        raise QueryError("--by", f"unknown time grain {grain!r}; accepted: {', '.join(GRAINS)}")
    if basis not in BASES:
        raise QueryError("--basis", f"unknown basis {basis!r}; accepted: {', '.join(BASES)}")
    if top is not None and top < 1:
        raise QueryError("--top", f"must be a positive number, got {top}")


def known_providers(engine: Engine) -> tuple[str, ...]:
    """Providers ``--provider`` accepts: those with rows, plus the built-in names."""
    with engine.connect() as conn:
        present = conn.execute(select(USAGE_DAILY.c.provider).distinct()).scalars().all()
    names = set(present) | set(KNOWN_PROVIDERS)
    try:  # the provider and importer registries arrive with other issues; use them when present
        import providers as _providers

        names |= set(getattr(_providers, "REGISTRY", {}))
    except ImportError:  # pragma: no cover - the package ships with the product
        pass
    return tuple(sorted(names))


def check_providers(engine: Engine, wanted: Iterable[str]) -> None:
    """Reject a ``--provider`` nobody knows, naming the accepted ones.

    Raises:
        QueryError: an unknown provider name.
    """
    known = known_providers(engine)
    for name in wanted:
        if name not in known:
            raise QueryError("--provider", f"unknown provider {name!r}; accepted: {', '.join(known)}")


# -- SQL building blocks --------------------------------------------------------------------------


def _epoch(col: Any) -> ColumnElement[int]:
    """A SQLite time column as its integer epoch seconds (so arithmetic binds integers)."""
    return type_coerce(col, BigInteger)


def _day_aligned(ts: datetime) -> bool:
    return int(ts.timestamp()) % 86_400 == 0


def _period_daily(dialect: str, day_col: Any, grain: str) -> ColumnElement[datetime]:
    """Start of the UTC day/week/month containing ``usage_daily.day``."""
    if dialect == "sqlite":
        epoch = _epoch(day_col)
        if grain == "day":
            expr: Any = epoch
        elif grain == "week":  # 1970-01-05 was a Monday (345600 s after the epoch)
            expr = epoch - (epoch - 345_600) % 604_800
        else:
            expr = cast(func.strftime("%s", epoch, "unixepoch", "start of month"), Integer)
        return type_coerce(expr, UTCDateTime())
    unit = {"day": "day", "week": "week", "month": "month"}[grain]
    return type_coerce(func.date_trunc(unit, day_col), UTCDateTime())


def _hour_of(dialect: str, col: Any) -> ColumnElement[datetime]:
    if dialect == "sqlite":
        epoch = _epoch(col)
        return type_coerce(epoch - epoch % 3600, UTCDateTime())
    return type_coerce(func.date_trunc("hour", col), UTCDateTime())


def _day_of(dialect: str, col: Any) -> ColumnElement[datetime]:
    if dialect == "sqlite":
        epoch = _epoch(col)
        return type_coerce(epoch - epoch % 86_400, UTCDateTime())
    return type_coerce(func.date_trunc("day", col), UTCDateTime())


def _is_daily_bucket(dialect: str, table: Table) -> ColumnElement[bool]:
    """Buckets a day or longer (cost APIs, daily CSVs): they stay on their UTC day."""
    if dialect == "sqlite":
        return _epoch(table.c.bucket_end) - _epoch(table.c.bucket_start) >= 86_400
    return table.c.bucket_end - table.c.bucket_start >= literal_column("INTERVAL '1 day'")


def _value_conditions(table: Table, filters: Filters) -> list[ColumnElement[bool]]:
    return [table.c[col].in_(vals) for col, vals in filters.value_filters().items()]


def _hourly_window(dialect: str, filters: Filters, zone: tzinfo, table: Table = USAGE) -> ColumnElement[bool]:
    """Rows in the window: by start, and daily buckets by their UTC date's local midnight.

    ``table`` is ``usage`` (by ``bucket_start``) or ``usage_hourly`` (by ``hour``, which the
    window's whole hours make the same test).
    """
    start, daily = _start_and_daily(dialect, table)
    d0, d1 = _local_dates_as_utc(filters.since, filters.until, zone)
    return and_(
        # The outer range lets the planner use the time index (an OR alone scans).
        start >= min(filters.since, d0),
        start < max(filters.until, d1),
        or_(
            and_(~daily, start >= filters.since, start < filters.until),
            and_(daily, start >= d0, start < d1),
        ),
    )


def _start_and_daily(dialect: str, table: Table) -> tuple[Any, Any]:
    """The time column and the "bucket of a day or longer" test of ``usage`` or ``usage_hourly``."""
    if table is USAGE_HOURLY:
        return table.c.hour, table.c.daily
    return table.c.bucket_start, _is_daily_bucket(dialect, table)


def _narrow_enough(filters: Filters, by: Sequence[str]) -> bool:
    """True when every column grouped or filtered by is one the narrow rollups keep."""
    wanted = {DIMENSION_COLUMNS[name] for name in by} | set(filters.value_filters())
    return wanted <= HOURLY_COLUMNS


def _daily_table(engine: Engine, filters: Filters, by: Sequence[str]) -> Table:
    """``usage_daily_slim`` when it holds every column asked for, else ``usage_daily``.

    Before it is read, the marked days of the window are rebuilt (:func:`refresh`); behind
    another writer's lock, or when a narrower sum would overflow SQLite, ``usage_daily`` answers.
    """
    if not _narrow_enough(filters, by):
        return USAGE_DAILY
    try:
        refresh(engine, SLIM, filters.since, filters.until, wait=False)
    except RollupUnavailable:
        return USAGE_DAILY
    return USAGE_DAILY_SLIM


def _hourly_table(engine: Engine, filters: Filters, by: Sequence[str], zone: tzinfo) -> Table:
    """``usage_hourly`` when it holds every column asked for and the window is whole hours, else ``usage``.

    Before it is read, the marked days of the window are rebuilt (:func:`refresh_hourly`).
    """
    if not _narrow_enough(filters, by) or not (_hour_aligned(filters.since) and _hour_aligned(filters.until)):
        return USAGE
    d0, d1 = _local_dates_as_utc(filters.since, filters.until, zone)
    try:
        refresh_hourly(engine, min(filters.since, d0), max(filters.until, d1), wait=False)
    except RollupUnavailable:  # a long import holds SQLite's write lock: read the raw rows meanwhile
        return USAGE
    return USAGE_HOURLY


def _hour_aligned(ts: datetime) -> bool:
    return int(ts.timestamp()) % 3600 == 0


# -- who bills each account-day, and where usage rows exist ---------------------------------------


@dataclass
class _DayFacts:
    """Per (provider, account, UTC day): who bills it and who counts, and whether usage rows exist.

    Usage rows (estimated or unpriced: API usage endpoints, token-only CSVs) are where tokens and
    quantities come from; a billed source's own counts are used only on account-days without
    them, so a cost row's images or tokens are never added to the usage rows' (design rule 7).
    """

    coverage: Coverage = field(default_factory=dict)
    usage_days: set[tuple[str, str, date]] = field(default_factory=set)


def _facts_from(raw: list[_Raw], prefs: Preferences) -> _DayFacts:
    """Facts from the main query's own groups (see :func:`_coverage_in_groups`)."""
    bills: dict[tuple[str, str, date], DayBill] = {}
    usage_days: set[tuple[str, str, date]] = set()
    for r in raw:
        if r.day is None or r.section != "provider":
            continue
        if r.basis == "billed":
            add_money(bills, r, BillingSource(r.source, r.kind), r.day.date())
        else:
            usage_days.add((r.provider, r.account, r.day.date()))
    return _DayFacts(decide(bills.values(), prefs), usage_days)


def _facts(
    engine: Engine, filters: Filters, zone: tzinfo, *, daily: bool, prefs: Preferences, table: Table
) -> _DayFacts:
    """:class:`_DayFacts` read on their own, when model, project, key, team or user filters narrow the report.

    Only provider and account filters apply: a model filter must not turn a billed day into an
    estimated one, or the parts would stop adding up to the whole. The result is small
    (providers x accounts x days x sources), so it is read once and applied in Python, which keeps
    the main query a plain ``GROUP BY`` (the query benchmark: about 2x faster than a join).
    """
    t = table.c
    dialect = engine.dialect.name
    sources = [s for s in filters.sources if s in BILLING_SOURCES]
    if not sources:
        return _DayFacts()
    if daily:
        day: Any = t.day
        conds: list[Any] = [t.day >= filters.since, t.day < filters.until]
    else:
        day = _day_of(dialect, _start_and_daily(dialect, table)[0])
        conds = [_hourly_window(dialect, filters, zone, table)]
    conds.append(t.source.in_(sources))
    if filters.providers:
        conds.append(t.provider.in_(filters.providers))
    if filters.accounts:
        conds.append(t.account.in_(filters.accounts))
    billed = t.basis == "billed"
    keys = (t.provider, t.account, day, t.source, t.kind, billed, t.currency)
    stmt = select(*keys, *exact_sum(t.cost, dialect)).where(*conds).group_by(*keys)
    bills: dict[tuple[str, str, date], DayBill] = {}
    usage_days: set[tuple[str, str, date]] = set()
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            provider, account, when, source, kind, is_billed, currency = row[:7]
            the_day = when.date()
            if is_billed:
                cost = combine_sum(row[7:], MONEY_SCALE, dialect)
                add_money(bills, _Money(provider, account, currency, cost), BillingSource(source, kind), the_day)
            elif (provider, kind) not in SUBSET_KINDS:
                usage_days.add((provider, account, the_day))
    return _DayFacts(decide(bills.values(), prefs), usage_days)


class _Money(NamedTuple):
    provider: str
    account: str
    currency: str
    cost: Decimal | None


def _coverage_in_groups(filters: Filters) -> bool:
    """True when only filters that the day facts also use are set (provider, account, source).

    Then the main query's own groups hold every row the facts need, and no second read is
    necessary; a model, project, key, team or user filter needs :func:`_facts`.
    """
    return not (filters.models or filters.projects or filters.api_keys or filters.teams or filters.users)


@dataclass(slots=True)
class _Raw:
    """One SQL group, before the basis rule and the merge into report rows."""

    dims: tuple[str, ...]
    when: datetime | None  # period (daily table) or UTC hour/day (usage table)
    daily: bool
    provider: str
    account: str
    day: datetime | None
    source: str
    kind: str
    basis: str
    currency: str
    unit: str
    level_at: datetime | None
    cost: Decimal | None
    tokens: tuple[int, ...]
    quantity: Decimal
    n: int
    #: The side source (``proxy``, ``otel``), ``subset`` for kinds another kind holds, else ``provider``.
    section: str = ""

    def __post_init__(self) -> None:
        if self.source in SIDE_SOURCES:
            self.section = self.source
        else:
            self.section = "subset" if (self.provider, self.kind) in SUBSET_KINDS else "provider"


class _Layout:
    """The select list every query shares, and how to read a result row back into a :class:`_Raw`.

    Columns: the ``by`` dimensions, the query's time columns, provider/account, source/kind,
    basis/currency/unit, the time of a level-unit group, then the measures: token counts, the
    quantity and the cost (each one or two columns, :func:`collector.core.sqltypes.exact_sum`),
    and the row count.
    """

    def __init__(
        self, table: Table, by: tuple[str, ...], dialect: str, level_time: Any, *, grouped: bool = True
    ) -> None:
        t = table.c
        self.dialect = dialect
        self.grouped = grouped
        self.dims: list[Any] = [t[DIMENSION_COLUMNS[name]] for name in by]
        self.keys: list[Any] = [
            t.provider,
            t.account,
            t.source,
            t.kind,
            t.basis,
            t.currency,
            t.quantity_unit,
            case((t.quantity_unit.in_(sorted(LEVEL_UNITS)), level_time), else_=None),
        ]
        self.scaled = dialect == "sqlite"  # money and quantities come back as scaled integers
        if self.scaled:  # the level's time as epoch seconds, converted by :meth:`moment`
            self.keys[-1] = type_coerce(self.keys[-1], BigInteger)
        #: Epoch seconds (SQLite) -> aware datetime, each distinct value converted once.
        self.moments: dict[Any, datetime | None] = {None: None}
        if not grouped:  # one table row per group: its own columns, no SUM
            qty: Any = case((t.quantity_unit != "", t.quantity))
            money: Any = t.cost
            if self.scaled:  # converted by :meth:`reader`, without a result processor per value
                qty, money = type_coerce(qty, BigInteger), type_coerce(money, BigInteger)
            self.measures: list[Any] = [*(t[name] for name in TOKEN_FIELDS), qty, money, t.rows]
            self.n_qty = self.n_cost = 1
            self.exact_ints = True
            return
        quantity = exact_sum(case((t.quantity_unit != "", t.quantity)), dialect)
        cost = exact_sum(t.cost, dialect)
        self.n_qty, self.n_cost = len(quantity), len(cost)
        count = func.sum(t.rows) if "rows" in t else func.count()
        self.measures = [*(func.sum(t[name]) for name in TOKEN_FIELDS), *quantity, *cost, count]
        self.exact_ints = dialect == "sqlite"  # PostgreSQL's SUM(bigint) is a numeric (Decimal)

    def moment(self, value: Any) -> datetime | None:
        """A time column's value as an aware UTC datetime (SQLite returns epoch seconds)."""
        if isinstance(value, datetime):
            return value
        found = self.moments.get(value)
        if found is None and value is not None:
            found = self.moments[value] = datetime.fromtimestamp(int(value), UTC)
        return found

    def reader(self, base: int) -> Callable[[Any, datetime | None, bool, datetime | None], _Raw]:
        """A function that unpacks a result row whose keys start at ``base`` (after the dims and times).

        Built once per query with every offset and converter bound, because it runs once per
        result row (tens of thousands for a year by model and day).
        """
        n_dims, i = len(self.dims), base
        j = i + len(self.keys)
        k = j + len(TOKEN_FIELDS)
        q_end, c_end = k + self.n_qty, k + self.n_qty + self.n_cost
        grouped, scaled, exact_ints, dialect, moment = (
            self.grouped,
            self.scaled,
            self.exact_ints,
            self.dialect,
            self.moment,
        )
        zero = Decimal(0)

        def read(row: Any, when: datetime | None, daily: bool, day: datetime | None) -> _Raw:
            tokens = tuple(row[j:k]) if exact_ints else tuple(int(v) for v in row[j:k])
            if grouped:
                quantity = combine_sum(row[k:q_end], QUANTITY_SCALE, dialect)
                cost = combine_sum(row[q_end:c_end], MONEY_SCALE, dialect)
            elif scaled:
                qty, money = row[k], row[k + 1]
                quantity = scaled_decimal(qty, QUANTITY_SCALE) if qty else None
                cost = None if money is None else scaled_decimal(money, MONEY_SCALE)
            else:  # the typed columns' processors made them Decimals already
                quantity, cost = row[k], row[k + 1]
            provider, account, source, kind, basis, currency, unit, level = row[i:j]
            return _Raw(
                tuple(row[:n_dims]),
                when,
                daily,
                provider,
                account,
                day,
                source,
                kind,
                basis,
                currency,
                unit,
                moment(level),
                cost,
                tokens,
                quantity or zero,
                int(row[-1]),
            )

        return read


def _base_conditions(table: Table, basis: str, filters: Filters) -> list[ColumnElement[bool]]:
    conds = _value_conditions(table, filters)
    if basis == "estimated":
        conds.append(table.c.basis != "billed")
    return conds


# -- report ---------------------------------------------------------------------------------------


def report(
    engine: Engine,
    filters: Filters,
    *,
    by: Sequence[str] = (),
    grain: str | None = None,
    basis: str = "preferred",
    tz: str = "UTC",
    top: int | None = None,
    currency: str | None = None,
    converter: Converter | None = None,
) -> ReportResult:
    """Usage and money grouped by ``by`` (and a time ``grain``), on one money basis.

    Args:
        engine: the database.
        filters: window and value filters.
        by: dimensions from :data:`DIMENSIONS`, in output order.
        grain: ``None`` (whole window) or one of :data:`GRAINS`.
        basis: ``preferred``, ``billed`` or ``estimated`` (module docstring).
        tz: IANA zone whose local days/weeks/months the grain means; hourly usage is regrouped,
            daily buckets (cost APIs, daily CSVs) stay on their UTC day.
        top: keep the ``top`` groups with most money (then tokens), fold the rest into
            one ``(other)`` group so totals are unchanged.
        currency: show money in this currency, converted day by day by ``converter`` (each
            day's rate); money without a rate stays in its own currency and a note says which
            days (one line per currency, not one per day).
        converter: the rates (``collector.finance.fx``'s rate book); needed with ``currency``.

    Returns:
        The rows, sorted by section, period, then money, then tokens (largest first).

    Raises:
        QueryError: an unknown dimension, grain, basis, zone or a bad ``top``.
    """
    with paused_gc():  # tens of thousands of short-lived rows and groups, no cycles among them
        return _report(engine, filters, tuple(by), grain, basis, tz, top, currency, converter)


def _report(
    engine: Engine,
    filters: Filters,
    by: tuple[str, ...],
    grain: str | None,
    basis: str,
    tz: str,
    top: int | None,
    currency: str | None,
    converter: Converter | None,
) -> ReportResult:
    """:func:`report`'s body."""
    _check_args(by, grain, basis, top)
    try:
        zone = parse_tz(tz)
    except DateError as exc:
        raise QueryError("--tz", str(exc).removeprefix("--tz: ")) from exc
    notes: list[str] = []
    use_daily = zone is UTC and grain != "hour" and _day_aligned(filters.since) and _day_aligned(filters.until)
    conversion = _Conversion(currency.upper(), converter) if currency and converter is not None else None
    need_facts = basis != "estimated"
    facts = _DayFacts()
    hourly = USAGE
    daily_table = USAGE_DAILY
    if use_daily:
        daily_table = _daily_table(engine, filters, by)
        raw = _query_daily(engine, filters, by, grain, basis, need_facts or conversion is not None, daily_table)
    else:
        hourly = _hourly_table(engine, filters, by, zone)
        raw = _query_hourly(engine, filters, by, grain, basis, zone, hourly)
        if any(r.daily for r in raw) and (zone is not UTC or grain == "hour"):
            notes.append(
                "daily-bucket sources (cost APIs, daily CSV exports) stay on their UTC days"
                + (f"; hourly data is grouped by {tz} local time" if zone is not UTC else "")
            )
    if need_facts:
        prefs = preferences(engine)
        facts = (
            _facts_from(raw, prefs)
            if _coverage_in_groups(filters)
            else _facts(engine, filters, zone, daily=use_daily, prefs=prefs, table=daily_table if use_daily else hourly)
        )
    rows = _merge(raw, facts, basis, by, grain, zone, regroup=not use_daily, conversion=conversion)
    if top is not None:
        rows = _apply_top(rows, by, top)
    rows.sort(key=_sort_key)
    versions, exact = _price_versions(engine, filters, daily_table) if basis != "billed" else ((), True)
    if not exact:
        notes.append("price versions read from one estimated row per day (the window is large)")
    _basis_notes(rows, basis, notes)
    if conversion is not None:
        notes += conversion.notes()
    found = overlaps(facts.coverage)
    notes += [f"billed twice: {o.describe()}" for o in found]
    if any(r.section == "subset" for r in rows):
        kinds = ", ".join(f"{p} {k} (already in {h})" for (p, k), h in sorted(SUBSET_KINDS.items()))
        notes.append(f"listed apart and never added: {kinds}")
    for side in (s for s in SIDE_SOURCES if s in filters.sources):
        notes.append(f"{side} rows are listed separately and are never added to the providers' numbers")
    return ReportResult(
        rows=rows,
        filters=filters,
        by=by,
        grain=grain,
        basis=basis,
        tz=tz if zone is not UTC else "UTC",
        price_versions=versions,
        notes=notes,
        overlaps=found,
        missing_rates={c: sorted(d) for c, d in conversion.missing.items()} if conversion else {},
        converted_days={c: sorted(d) for c, d in conversion.converted.items()} if conversion else {},
    )


def _query_daily(
    engine: Engine,
    filters: Filters,
    by: tuple[str, ...],
    grain: str | None,
    basis: str,
    need_facts: bool,
    table: Table = USAGE_DAILY,
) -> list[_Raw]:
    """Group ``usage_daily`` (or its slim sums); with day facts needed, also by UTC day (unless the grain is day)."""
    d = table
    dialect = engine.dialect.name
    with_day = need_facts and grain != "day"
    layout = _Layout(d, by, dialect, d.c.day, grouped=not _one_row_per_group(d, by, grain, with_day))
    times: list[Any] = []
    if grain is not None:
        times.append(_period_daily(dialect, d.c.day, grain))
    if with_day:
        times.append(d.c.day)
    if layout.scaled:  # epoch seconds, turned into datetimes once per distinct value below
        times = [type_coerce(t, BigInteger) for t in times]
    group = [*layout.dims, *times, *layout.keys]
    conds = [d.c.day >= filters.since, d.c.day < filters.until, *_base_conditions(d, basis, filters)]
    stmt = select(*group, *layout.measures).where(*conds)
    # Without GROUP BY, the day index's own order: the report's rows come out nearly sorted by period.
    stmt = stmt.group_by(*group) if layout.grouped else stmt.order_by(d.c.day)
    n = len(by)
    at, read = layout.moment, layout.reader(n + len(times))
    out: list[_Raw] = []
    with engine.connect() as conn:
        for row in conn.execute(stmt).all():
            period = at(row[n]) if grain is not None else None
            day = at(row[n + len(times) - 1]) if with_day else period
            out.append(read(row, period, False, day))
    return out


def _one_row_per_group(table: Table, by: tuple[str, ...], grain: str | None, with_day: bool) -> bool:
    """True when each row of a narrow rollup is a group of its own, so the read needs no ``GROUP BY``.

    A ``usage_daily_slim`` row is one (day, :data:`HOURLY_DIMENSIONS`) combination, a
    ``usage_hourly`` row one (hour, daily flag, :data:`HOURLY_DIMENSIONS`). The queries always
    group by the money rule's keys (every one of those dimensions but ``model``), so with the
    model among the dimensions and the row's own time among the times (the slim table's day, by
    the day grain or the facts' day column; the hourly table's hour, by any grain) the groups are
    exactly its rows. Skipping the sort that ``GROUP BY`` costs SQLite is most of a year-long
    report's SQL time.
    """
    if "model" not in by:
        return False
    if table is USAGE_DAILY_SLIM:
        return grain == "day" or with_day
    return table is USAGE_HOURLY and grain is not None


def _query_hourly(
    engine: Engine,
    filters: Filters,
    by: tuple[str, ...],
    grain: str | None,
    basis: str,
    zone: tzinfo,
    table: Table = USAGE,
) -> list[_Raw]:
    """Group ``usage`` (or ``usage_hourly``) by UTC hour (or day without a grain); :func:`_merge` regroups locally."""
    u = table
    dialect = engine.dialect.name
    start, daily = _start_and_daily(dialect, u)
    in_window = _hourly_window(dialect, filters, zone, u)
    hour = start if u is USAGE_HOURLY else _hour_of(dialect, start)
    when = hour if grain is not None else _day_of(dialect, start)
    layout = _Layout(u, by, dialect, hour, grouped=not _one_row_per_group(u, by, grain, False))
    if layout.scaled:  # epoch seconds, turned into datetimes once per distinct value below
        when = type_coerce(when, BigInteger)
    group = [*layout.dims, when, daily, *layout.keys]
    stmt = select(*group, *layout.measures).where(in_window, *_base_conditions(u, basis, filters))
    stmt = stmt.group_by(*group) if layout.grouped else stmt.order_by(u.c.hour)
    n = len(by)
    at, read = layout.moment, layout.reader(n + 2)
    days: dict[datetime, datetime] = {}
    out: list[_Raw] = []
    with engine.connect() as conn:
        for row in conn.execute(stmt).all():
            ts = at(row[n])
            assert ts is not None
            day = days.get(ts)
            if day is None:
                day = days[ts] = floor_day(ts)
            out.append(read(row, ts, bool(row[n + 1]), day))
    return out


def _local_dates_as_utc(since: datetime, until: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """UTC midnights of the local dates whose local midnight falls in ``[since, until)``.

    A daily bucket (UTC date D) is treated as starting at local midnight of D: in UTC that is
    the usual rule (a bucket belongs to the window its start falls in).
    """
    first_local = since.astimezone(zone)
    end_local = until.astimezone(zone)
    first = first_local.date() if is_midnight(first_local) else first_local.date() + DAY
    last_excl = end_local.date() if is_midnight(end_local) else end_local.date() + DAY
    return _utc_midnight(first), _utc_midnight(last_excl)


def _utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _local_period(hour: datetime, daily: bool, grain: str, zone: tzinfo) -> datetime:
    """The start of the period a UTC hour falls in, in ``zone`` (daily buckets keep UTC dates)."""
    if daily:
        day = hour.date()
        local = datetime(day.year, day.month, day.day, tzinfo=zone)
        if grain == "hour":
            return local
    else:
        local = hour.astimezone(zone)
        if grain == "hour":
            return local
        local = datetime(local.year, local.month, local.day, tzinfo=zone)
    if grain == "week":
        monday = local.date() - timedelta(days=local.weekday())
        local = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
    elif grain == "month":
        local = datetime(local.year, local.month, 1, tzinfo=zone)
    return local


def _counts(r: _Raw, facts: _DayFacts, basis: str) -> tuple[str, bool, bool] | None:
    """``(effective basis, money counts, counts count)`` of one group, or None to leave it out.

    The basis rule (design rule 5, module docstring): on an account-day a billed source covers,
    only the counted source's billed money counts (other sources' billed rows are left out: they
    bill the same charges); elsewhere the group's own basis holds. Tokens and quantities come
    from usage rows, and from the counted billed rows only where the day has no usage rows.
    """
    if basis == "estimated":
        return r.basis, r.basis == "estimated", True
    if r.section != "provider" or r.day is None:
        if basis == "billed" and r.basis != "billed":
            return None
        return r.basis, r.basis != "unpriced", True
    key = (r.provider, r.account, r.day.date())
    bill = facts.coverage.get(key)
    if r.basis == "billed":
        if bill is None or bill.counted != (r.source, r.kind):
            return None  # another source bills this account-day and counts
        return "billed", True, key not in facts.usage_days
    if bill is not None:
        return "billed", False, True
    if basis == "billed":
        return None
    return r.basis, r.basis != "unpriced", True


def _merge(
    raw: list[_Raw],
    facts: _DayFacts,
    basis: str,
    by: tuple[str, ...],
    grain: str | None,
    zone: tzinfo,
    *,
    regroup: bool,
    conversion: _Conversion | None = None,
) -> list[ReportRow]:
    """Apply the basis rule to each SQL group (:func:`_counts`) and fold the groups into report rows.

    Token-only parts (currency ``''``) of a report row join its money part when that has exactly
    one currency, so a billed charge and the usage it bills for are one line.
    """
    rows: dict[tuple[Any, ...], ReportRow] = {}
    #: (dims, period, section, basis) -> its one money row, or None once it has several currencies.
    money_part: dict[tuple[Any, ...], ReportRow | None] = {}
    dims_named: dict[tuple[str, ...], dict[str, str]] = {}  # the dims of each value tuple, named once
    local = grain is not None and regroup  # hourly rows: find each hour's (local) period
    periods: dict[tuple[datetime | None, bool], datetime | None] = {}
    for r in raw:
        decided = _counts(r, facts, basis)
        if decided is None:
            continue
        eff, money, counts = decided
        if grain is None:
            period = None
        elif local:
            pkey = (r.when, r.daily)
            if pkey not in periods:
                assert r.when is not None
                periods[pkey] = _local_period(r.when, r.daily, grain, zone)
            period = periods[pkey]
        else:
            period = r.when
        section = r.section
        if conversion is not None and money and r.cost is not None and r.day is not None:
            converted, converted_currency = conversion.apply(r.cost, r.currency, r.day.date())
            r = replace(r, cost=converted, currency=converted_currency)
        currency = r.currency if money else ""
        key = (r.dims, period, section, eff, currency)
        row = rows.get(key)
        if row is None:
            named = dims_named.get(r.dims)
            if named is None:
                named = dims_named[r.dims] = dict(zip(by, r.dims, strict=True))
            row = ReportRow(
                dims=dict(named),  # a row's own dict: callers may edit it
                period=period,
                cost=None,
                currency=currency,
                basis=eff,
                section=section,
            )
            rows[key] = row
            if currency:
                part = key[:4]
                money_part[part] = row if part not in money_part else None
        _accumulate(row, r, money, counts)
    out: list[ReportRow] = []
    for key, row in rows.items():
        if not key[4]:  # a token-only part joins its group's one money part, if it has exactly one
            target = money_part.get(key[:4])
            if target is not None:
                _fold(target, row)
                continue
        out.append(row)
    for row in out:
        _finish_levels(row.quantities, row.levels)
    return out


def _accumulate(row: ReportRow, r: _Raw, money: bool, counts: bool) -> None:
    if money and r.cost is not None:
        row.cost = r.cost if row.cost is None else row.cost + r.cost
        row.sources.add(f"{r.source}:{r.kind}")
    row.rows += r.n
    if not counts:
        return
    (inp, cr, cw5, cw1, outp, reas, req) = r.tokens
    row.input_tokens += inp
    row.cache_read_tokens += cr
    row.cache_write_5m_tokens += cw5
    row.cache_write_1h_tokens += cw1
    row.output_tokens += outp
    row.reasoning_tokens += reas
    row.requests += req
    if r.unit in LEVEL_UNITS:
        at = r.level_at or r.when or r.day
        assert at is not None
        series = row.levels.setdefault(r.unit, {})
        series[at] = series.get(at, Decimal(0)) + r.quantity
    elif r.unit or r.quantity:
        row.quantities[r.unit] = row.quantities.get(r.unit, Decimal(0)) + r.quantity


def _fold(into: ReportRow, part: ReportRow) -> None:
    for name in TOKEN_FIELDS:
        setattr(into, name, getattr(into, name) + getattr(part, name))
    if part.cost is not None:
        into.cost = part.cost if into.cost is None else into.cost + part.cost
    labels = _level_labels(part.levels)
    for unit, qty in part.quantities.items():
        if unit not in labels:
            into.quantities[unit] = into.quantities.get(unit, Decimal(0)) + qty
    _merge_levels(into.levels, part.levels)
    into.sources |= part.sources
    into.rows += part.rows


def _level_labels(levels: dict[str, dict[datetime, Decimal]]) -> set[str]:
    return {level_label(unit) for unit in levels}


def level_label(unit: str) -> str:
    """How a level unit is shown: its average over the window (``bytes (avg)``)."""
    return f"{unit} (avg)"


def _merge_levels(into: dict[str, dict[datetime, Decimal]], part: dict[str, dict[datetime, Decimal]]) -> None:
    """Add another group's series point by point (the groups' series stack at the same times)."""
    for unit, series in part.items():
        target = into.setdefault(unit, {})
        for at, value in series.items():
            target[at] = target.get(at, Decimal(0)) + value


def _finish_levels(quantities: dict[str, Decimal], levels: dict[str, dict[datetime, Decimal]]) -> None:
    """A level's quantity: the average of its (stacked) values over the times it was measured."""
    for unit, series in levels.items():
        if series:
            quantities[level_label(unit)] = sum(series.values(), Decimal(0)) / len(series)


def _weight(row: ReportRow) -> tuple[Decimal, int]:
    return (row.cost or Decimal(0), row.input_tokens + row.output_tokens)


_SECTION_RANK = {name: i for i, name in enumerate(SECTIONS)}


_NO_PERIOD = datetime(1970, 1, 1, tzinfo=UTC)


def _sort_key(row: ReportRow) -> tuple[Any, ...]:
    return (
        _SECTION_RANK.get(row.section, len(SECTIONS)),
        row.period or _NO_PERIOD,  # aware datetimes compare across zones
        -(row.cost or 0),
        -(row.input_tokens + row.output_tokens),
        tuple(row.dims.values()),
        row.basis,
        row.currency,
    )


def _apply_top(rows: list[ReportRow], by: tuple[str, ...], top: int) -> list[ReportRow]:
    """Keep the ``top`` heaviest dimension groups per section; fold the others into ``(other)``."""
    if not by:
        return rows
    weight: dict[tuple[str, tuple[str, ...]], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for row in rows:
        money, tokens = _weight(row)
        w = weight[(row.section, tuple(row.dims.values()))]
        w[0] += money
        w[1] += tokens
    keep: set[tuple[str, tuple[str, ...]]] = set()
    for section in {s for s, _ in weight}:
        ranked = sorted(
            (k for k in weight if k[0] == section), key=lambda k: (weight[k][0], weight[k][1], k[1]), reverse=True
        )
        keep.update(ranked[:top])
    out: list[ReportRow] = []
    other: dict[tuple[Any, ...], ReportRow] = {}
    for row in rows:
        if (row.section, tuple(row.dims.values())) in keep:
            out.append(row)
            continue
        key = (row.section, row.period, row.basis, row.currency)
        if key not in other:
            blank = replace(
                row, dims=dict.fromkeys(by, OTHER_LABEL), cost=None, quantities={}, rows=0, sources=set(), levels={}
            )
            for name in TOKEN_FIELDS:
                setattr(blank, name, 0)
            other[key] = blank
        _fold(other[key], row)
    for folded in other.values():
        _finish_levels(folded.quantities, folded.levels)
    return out + list(other.values())


#: Above this many estimated usage rows in a window, price versions are probed one row per day.
EXACT_PRICE_VERSION_ROWS = 20_000


def _price_versions(engine: Engine, filters: Filters, daily: Table = USAGE_DAILY) -> tuple[tuple[str, ...], bool]:
    """Price-table versions behind the window's estimates (design rule 6), and whether exact.

    ``price_version`` is only on ``usage``, and reading it for a year of rows costs a scan of
    the whole window. Up to :data:`EXACT_PRICE_VERSION_ROWS` estimated rows the answer is
    exact; above, one estimated row per UTC day is read through the ``bucket_start`` index
    (re-pricing rewrites whole days, so a day rarely mixes versions) and the footer says so.
    """
    d = daily.c  # usage_daily, or its slim sums when they hold every filtered column
    u = USAGE.c
    since = floor_day(filters.since)
    conds = [d.day >= since, d.day < filters.until, d.basis == "estimated", *_value_conditions(daily, filters)]
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(d.rows)).where(*conds)).scalar()
        if int(total or 0) <= EXACT_PRICE_VERSION_ROWS:
            stmt = (
                select(u.price_version)
                .where(
                    u.bucket_start >= since,
                    u.bucket_start < filters.until,
                    u.basis == "estimated",
                    u.price_version != "",
                    *_value_conditions(USAGE, filters),
                )
                .distinct()
            )
            return tuple(sorted(conn.execute(stmt).scalars().all())), True
        # One estimated row per day, in one statement (a correlated LIMIT 1 per day).
        days_sq = select(d.day.label("day")).where(*conds).group_by(d.day).subquery("days")
        if engine.dialect.name == "sqlite":
            next_day: Any = type_coerce(_epoch(days_sq.c.day) + 86_400, UTCDateTime())
        else:
            next_day = days_sq.c.day + literal_column("INTERVAL '1 day'")
        probe = (
            select(u.price_version)
            .where(
                u.bucket_start >= days_sq.c.day,
                u.bucket_start < next_day,
                u.basis == "estimated",
                u.price_version != "",
                *_value_conditions(USAGE, filters),
            )
            .limit(1)
            .correlate(days_sq)
            .scalar_subquery()
        )
        found = {v for v in conn.execute(select(probe).select_from(days_sq)).scalars() if v}
        return tuple(sorted(found)), False


def _basis_notes(rows: list[ReportRow], basis: str, notes: list[str]) -> None:
    unpriced = sum(1 for r in rows if r.basis == "unpriced")
    if unpriced:
        notes.append(f"{unpriced} row(s) are unpriced: models missing from the price table (no cost, not $0)")
    uncharged = sum(1 for r in rows if r.basis == "billed" and r.cost is None)
    if uncharged:
        notes.append(
            f"{uncharged} row(s) are usage on billed days with no charge of their own: "
            "the bill reports it without this breakdown"
        )
    if basis == "billed":
        notes.append("basis billed: days no billed source covers are left out")
    elif basis == "estimated":
        notes.append("basis estimated: billed rows are left out; unpriced usage is shown without cost")


# -- helpers for the dashboard ------------------------------------------------------------------


def daily_spend(engine: Engine, filters: Filters, basis: str = "preferred") -> list[DailySpend]:
    """Money per UTC day, provider and account (unpriced usage carries no money and is left out)."""
    result = report(engine, filters, by=("provider", "account"), grain="day", basis=basis)
    out = [
        DailySpend(r.period, r.dims["provider"], r.dims["account"], r.cost, r.currency, r.basis)
        for r in result.rows
        if r.cost is not None and r.period is not None and r.section == "provider"
    ]
    out.sort(key=lambda s: (s.day, s.provider, s.account, s.basis, s.currency))
    return out


#: Report dimension -> column, for :func:`dimension_values` (the filterable ones).
FILTER_COLUMNS: dict[str, str] = {
    "provider": "provider",
    "account": "account",
    "model": "model",
    "project": "project",
    "api_key": "api_key_id",
    "team": "team",
}


def dimension_values(engine: Engine, since: datetime, until: datetime) -> dict[str, list[str]]:
    """The values each filterable dimension takes in ``[since, until)`` (for filter pickers).

    One ``GROUP BY`` of the key columns over the window's days in the daily rollup, with no sums
    and no money basis: much cheaper than a report grouped by the same columns.
    """
    d = USAGE_DAILY.c
    cols = [d[c] for c in FILTER_COLUMNS.values()]
    stmt = select(*cols).where(d.day >= since, d.day < until).group_by(*cols)
    values: dict[str, set[str]] = {name: set() for name in FILTER_COLUMNS}
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            for name, value in zip(FILTER_COLUMNS, row, strict=True):
                values[name].add(value)
    return {name: sorted(v) for name, v in values.items()}


def has_source(engine: Engine, source: str, since: datetime, until: datetime) -> bool:
    """True when any usage row of ``source`` falls in ``[since, until)`` (an index range, stops early)."""
    d = USAGE_DAILY.c
    stmt = select(d.day).where(d.day >= since, d.day < until, d.source == source).limit(1)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


__all__ = [
    "BASES",
    "DIMENSIONS",
    "GRAINS",
    "SOURCES",
    "DailySpend",
    "Filters",
    "QueryError",
    "ReportResult",
    "ReportRow",
    "Sums",
    "check_providers",
    "daily_spend",
    "dimension_values",
    "has_source",
    "known_providers",
    "parse_by",
    "report",
]
