"""Which billed source counts, when several bill the same provider account and day (design rule 5).

A company often has two or three machine-readable copies of one bill: the provider's cost API,
its native billing export (AWS CUR, the GCP billing export, the Azure cost export, Fireworks'
billing CSV), a FOCUS export of the same charges, a hand-made generic CSV, or a FOCUS file this
product exported itself. Added together they would count the bill two or three times, so for
each (provider, billing account, UTC day) exactly one billed source counts:

1. an explicit preference for that provider account (``llm-usage billing prefer``, or the Import
   page), when that source has billed rows on the day;
2. otherwise the most trusted source present, by :data:`RANKS`: the provider's own cost API, then
   its native billing export, then FOCUS, then the generic template (ties: by name).

Rows of the other sources are kept, never deleted (remove a file or a connection's rows to let the
next source count), and every place that shows money says which source counted and which
overlapped: the report's footer and machine rows, the import summary (and its dry run), a sync's
output, ``llm-usage status`` and the dashboard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Column, Index, String, Table, delete, func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import UTCDateTime
from collector.core.store import USAGE, USAGE_DAILY, bump_data_version

DAY = timedelta(days=1)
#: Sources whose billed rows can bill a provider account-day; the proxy never bills.
BILLING_SOURCES: tuple[str, ...] = ("api", "csv")


class BillingSource(NamedTuple):
    """A billed source: the row's ``source`` and ``kind`` (a cost endpoint or an export format)."""

    source: str
    kind: str

    @property
    def label(self) -> str:
        """``api:costs``, ``csv:aws_cur``: how outputs name it."""
        return f"{self.source}:{self.kind}"

    @classmethod
    def parse(cls, text: str) -> BillingSource:
        """Read ``source:kind`` back (``ValueError`` on anything else)."""
        source, sep, kind = text.strip().partition(":")
        if not sep or source not in BILLING_SOURCES or not kind:
            raise ValueError(f"{text!r} is not a billed source; write it as source:kind, e.g. csv:aws_cur or api:costs")
        return cls(source, kind)


#: CSV formats that are a provider's own billing export (rank 1; provider-apis.md §5-§8).
NATIVE_EXPORTS = frozenset({"aws_cur", "gcp_billing", "azure_cost", "fireworks"})
#: Trust order of billed sources (lower counts first), with the reason shown to people.
RANKS: tuple[tuple[int, str], ...] = (
    (0, "the provider's own cost API"),
    (1, "the provider's native billing export"),
    (2, "a FOCUS export"),
    (3, "the generic CSV template"),
)


def rank(src: BillingSource) -> int:
    """Lower is more trusted: cost API, native export, FOCUS, generic (and unknown formats)."""
    if src.source == "api":
        return 0
    if src.kind in NATIVE_EXPORTS:
        return 1
    if src.kind == "focus":
        return 2
    return 3


def why(src: BillingSource) -> str:
    """The precedence reason for a source, for notes."""
    return RANKS[rank(src)][1]


def choose(present: Iterable[BillingSource], preferred: BillingSource | None = None) -> BillingSource:
    """The one source that counts among those billing one account-day."""
    candidates = sorted(set(present), key=lambda s: (rank(s), s.label))
    if preferred is not None and preferred in candidates:
        return preferred
    return candidates[0]


# -- explicit preferences ----------------------------------------------------------------------


class BillingPreference(SQLModel, table=True):
    """``billing_preferences``: the billed source an admin chose for one provider account."""

    __tablename__ = "billing_preferences"
    __table_args__ = (Index("ux_billing_preferences", "provider", "account", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(sa_column=Column(String(64), nullable=False))
    account: str = Field(sa_column=Column(String(255), nullable=False))
    source: str = Field(sa_column=Column(String(16), nullable=False))
    kind: str = Field(sa_column=Column(String(64), nullable=False))
    set_by: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    set_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


PREFERENCES: Table = BillingPreference.__table__  # type: ignore[attr-defined]
Preferences = Mapping[tuple[str, str], BillingSource]


def preferences(engine: Engine | Connection) -> dict[tuple[str, str], BillingSource]:
    """Every explicit preference, by (provider, account)."""
    p = PREFERENCES.c
    stmt = select(p.provider, p.account, p.source, p.kind)
    if isinstance(engine, Connection):
        rows = engine.execute(stmt).all()
    else:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
    return {(r.provider, r.account): BillingSource(r.source, r.kind) for r in rows}


def set_preference(engine: Engine, provider: str, account: str, src: BillingSource, *, who: str = "") -> None:
    """Make ``src`` the billed source that counts for one provider account (replacing any other)."""
    with engine.begin() as conn:
        conn.execute(delete(PREFERENCES).where(PREFERENCES.c.provider == provider, PREFERENCES.c.account == account))
        conn.execute(
            insert(PREFERENCES).values(
                provider=provider,
                account=account,
                source=src.source,
                kind=src.kind,
                set_by=who[:255],
                set_at=datetime.now(UTC),
            )
        )
        bump_data_version(conn)  # which source counts changed, so every figure kept over it did


def clear_preference(engine: Engine, provider: str, account: str) -> bool:
    """Back to the default precedence for one provider account; False when none was set."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(PREFERENCES).where(PREFERENCES.c.provider == provider, PREFERENCES.c.account == account)
        )
        if result.rowcount:
            bump_data_version(conn)
    return bool(result.rowcount)


# -- coverage: who bills which account-day -------------------------------------------------------


@dataclass
class DayBill:
    """One provider account-day: each billed source's money (per currency) and the one that counts."""

    provider: str
    account: str
    day: date
    money: dict[BillingSource, dict[str, Decimal]] = field(default_factory=dict)
    counted: BillingSource | None = None

    @property
    def overlapping(self) -> bool:
        """True when more than one source bills this account-day."""
        return len(self.money) > 1


Coverage = dict[tuple[str, str, date], DayBill]


def decide(bills: Iterable[DayBill], prefs: Preferences) -> Coverage:
    """Set :attr:`DayBill.counted` on each account-day (explicit preference, else precedence)."""
    out: Coverage = {}
    for bill in bills:
        bill.counted = choose(bill.money, prefs.get((bill.provider, bill.account)))
        out[(bill.provider, bill.account, bill.day)] = bill
    return out


def add_money(bills: dict[tuple[str, str, date], DayBill], row: Any, src: BillingSource, day: date) -> None:
    """Add one billed group's money (``row.currency``, ``row.cost``) to its account-day."""
    key = (row.provider, row.account, day)
    bill = bills.get(key)
    if bill is None:
        bill = bills[key] = DayBill(row.provider, row.account, day)
    per_currency = bill.money.setdefault(src, {})
    if row.cost is not None:
        per_currency[row.currency] = per_currency.get(row.currency, Decimal(0)) + row.cost


def read_coverage(
    conn: Connection | Engine,
    since: datetime,
    until: datetime,
    *,
    providers: Iterable[str] = (),
    accounts: Iterable[str] = (),
    sources: Iterable[str] = BILLING_SOURCES,
    prefs: Preferences | None = None,
) -> Coverage:
    """Who bills each provider account-day whose UTC day starts in ``[since, until)``, and who counts.

    One ``GROUP BY`` over the daily rollup's billed rows (few next to usage rows).
    """
    from collector.core.sqltypes import MONEY_SCALE, combine_sum, exact_sum

    d = USAGE_DAILY.c
    wanted = [s for s in sources if s in BILLING_SOURCES]
    if not wanted:
        return {}
    dialect = conn.dialect.name
    keys = (d.provider, d.account, d.day, d.source, d.kind, d.currency)
    conds = [d.basis == "billed", d.day >= _midnight(since), d.day < until, d.source.in_(wanted)]
    if providers := tuple(providers):
        conds.append(d.provider.in_(providers))
    if accounts := tuple(accounts):
        conds.append(d.account.in_(accounts))
    stmt = select(*keys, *exact_sum(d.cost, dialect)).where(*conds).group_by(*keys)
    bills: dict[tuple[str, str, date], DayBill] = {}

    def run(c: Connection) -> None:
        for row in c.execute(stmt):
            cost = combine_sum(row[6:], MONEY_SCALE, dialect)
            add_money(
                bills,
                _Group(row.provider, row.account, row.currency, cost),
                BillingSource(row.source, row.kind),
                row.day.date(),
            )

    if isinstance(conn, Connection):
        run(conn)
        return decide(bills.values(), prefs if prefs is not None else preferences(conn))
    with conn.connect() as c:
        run(c)
        return decide(bills.values(), prefs if prefs is not None else preferences(c))


class _Group(NamedTuple):
    provider: str
    account: str
    currency: str
    cost: Decimal | None


def _midnight(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


# -- overlaps, for people -------------------------------------------------------------------------


@dataclass
class Overlap:
    """A run of consecutive account-days that several sources bill, and which one counted."""

    provider: str
    account: str
    first: date
    last: date
    counted: BillingSource
    others: tuple[BillingSource, ...]
    money: dict[BillingSource, dict[str, Decimal]] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: who bills the days, who counts, and each source's money there."""
        days = self.first.isoformat() if self.first == self.last else f"{self.first} .. {self.last}"
        parts = []
        for src in (self.counted, *self.others):
            amounts = ", ".join(f"{v:,.2f} {c}" for c, v in sorted(self.money.get(src, {}).items())) or "no amount"
            parts.append(f"{src.label} {amounts}")
        return (
            f"{self.provider} account {self.account or '(none)'} {days}: billed by {' and '.join(parts)}; "
            f"{self.counted.label} counts ({why(self.counted)}), "
            f"{', '.join(s.label for s in self.others)} kept but not counted"
        )


def overlaps(coverage: Coverage) -> list[Overlap]:
    """Overlapping account-days, merged into runs of consecutive days with the same sources."""
    runs: list[Overlap] = []
    open_runs: dict[tuple[Any, ...], Overlap] = {}
    for (provider, account, day), bill in sorted(coverage.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        if not bill.overlapping or bill.counted is None:
            continue
        others = tuple(sorted((s for s in bill.money if s != bill.counted), key=lambda s: s.label))
        key = (provider, account, bill.counted, others)
        current = open_runs.get(key)
        if current is not None and current.last + DAY == day:
            current.last = day
        else:
            current = Overlap(provider, account, day, day, bill.counted, others)
            open_runs[key] = current
            runs.append(current)
        for src, money in bill.money.items():
            target = current.money.setdefault(src, {})
            for currency, value in money.items():
                target[currency] = target.get(currency, Decimal(0)) + value
    return runs


def counted_from(coverage: Coverage) -> dict[tuple[str, str], set[str]]:
    """The sources that counted per provider account, as labels (for summaries)."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (provider, account, _), bill in coverage.items():
        if bill.counted is not None:
            out[(provider, account)].add(bill.counted.label)
    return out


def account_days(conn: Connection, keys: Iterable[bytes]) -> tuple[set[tuple[str, str]], datetime, datetime] | None:
    """The provider accounts and the UTC-day span of the billed ``usage`` rows with these keys."""
    u = USAGE.c
    found: set[tuple[str, str]] = set()
    first: datetime | None = None
    last: datetime | None = None
    chunk = list(keys)
    for i in range(0, len(chunk), 500):
        stmt = (
            select(u.provider, u.account, func.min(u.bucket_start), func.max(u.bucket_start))
            .where(u.record_key.in_(chunk[i : i + 500]), u.basis == "billed")
            .group_by(u.provider, u.account)
        )
        for provider, account, lo, hi in conn.execute(stmt):
            found.add((provider, account))
            first = lo if first is None or lo < first else first
            last = hi if last is None or hi > last else last
    if not found or first is None or last is None:
        return None
    return found, _midnight(first), _midnight(last) + DAY


__all__ = [
    "BILLING_SOURCES",
    "NATIVE_EXPORTS",
    "PREFERENCES",
    "RANKS",
    "BillingPreference",
    "BillingSource",
    "Coverage",
    "DayBill",
    "Overlap",
    "account_days",
    "choose",
    "clear_preference",
    "counted_from",
    "decide",
    "overlaps",
    "preferences",
    "rank",
    "read_coverage",
    "set_preference",
    "why",
]
