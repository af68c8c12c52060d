"""Re-pricing stored estimates with today's tables, with a visible diff (design rule 6).

Estimates are priced once, when a row is ingested, and keep the ``price_version`` that priced
them. When the tables change (a ``genai-prices`` upgrade, a new version of the product's table,
the admin's price file), history keeps its old prices until someone asks: :func:`reprice` takes
the stored usage rows of a window (API and CSV sources, estimated or unpriced; billed rows and the
proxy's and OpenTelemetry's per-request prices are never touched), strips their money, runs the
ingest path's pricing on them again, and reports what would change, grouped by provider, model
and price version. With ``apply=True`` it writes the changed rows back through the ingest path,
one UTC day per transaction, so an interrupted run leaves whole days done.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from collector.core.ingest import ingest, named, priced
from collector.core.schema import RECORD_FIELDS, UsageRecord
from collector.core.sqltypes import MONEY_SCALE
from collector.core.store import USAGE

#: Sources whose estimates came from the ingest path (the proxy and OTLP price single requests).
REPRICED_SOURCES = ("api", "csv")
_DAY = timedelta(days=1)


@dataclass
class Change:
    """Rows of one provider and model that move from one price version to another."""

    provider: str
    model: str
    old_version: str
    new_version: str
    rows: int = 0
    old_cost: Decimal = Decimal(0)
    new_cost: Decimal = Decimal(0)
    newly_priced: int = 0
    newly_unpriced: int = 0

    @property
    def delta(self) -> Decimal:
        """New minus old money (USD: estimates are in the price table's currency)."""
        return self.new_cost - self.old_cost


@dataclass
class RepriceResult:
    """What re-pricing a window changes (or changed, when applied)."""

    since: datetime
    until: datetime
    rows_read: int = 0
    rows_changed: int = 0
    applied: bool = False
    changes: dict[tuple[str, str, str, str], Change] = field(default_factory=dict)

    def sorted_changes(self) -> list[Change]:
        """The changes, largest absolute difference first."""
        return sorted(self.changes.values(), key=lambda c: (-abs(c.delta), c.provider, c.model, c.old_version))

    @property
    def delta(self) -> Decimal:
        """The window's total difference."""
        return sum((c.delta for c in self.changes.values()), Decimal(0))


def _days(since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    start = since
    while start < until:
        end = min(start.replace(hour=0, minute=0, second=0, microsecond=0) + _DAY, until)
        yield start, end
        start = end


def _stored(conn: Connection, start: datetime, end: datetime, providers: Sequence[str]) -> list[UsageRecord]:
    cols = [USAGE.c[name] for name in RECORD_FIELDS]
    conds = [
        USAGE.c.bucket_start >= start,
        USAGE.c.bucket_start < end,
        USAGE.c.source.in_(REPRICED_SOURCES),
        USAGE.c.basis != "billed",
    ]
    if providers:
        conds.append(USAGE.c.provider.in_(list(providers)))
    rows = conn.execute(select(*cols).where(*conds))
    return [UsageRecord(**dict(zip(RECORD_FIELDS, row, strict=True))) for row in rows]


def repriced(record: UsageRecord) -> UsageRecord:
    """``record`` priced again from scratch by the ingest path's pricing."""
    bare = replace(record, cost=None, currency="", basis="unpriced", price_version="")
    return priced(named(bare))


def _note(result: RepriceResult, old: UsageRecord, new: UsageRecord) -> None:
    key = (old.provider, new.model, old.price_version, new.price_version)
    change = result.changes.get(key)
    if change is None:
        change = result.changes[key] = Change(old.provider, new.model, old.price_version, new.price_version)
    change.rows += 1
    change.old_cost += old.cost or Decimal(0)
    change.new_cost += new.cost or Decimal(0)
    change.newly_priced += old.cost is None and new.cost is not None
    change.newly_unpriced += old.cost is not None and new.cost is None


_STORED = Decimal(1).scaleb(-MONEY_SCALE)


def _stored_money(cost: Decimal | None) -> Decimal | None:
    """``cost`` as the database keeps it (:data:`collector.core.sqltypes.MONEY_SCALE` decimals)."""
    return cost.quantize(_STORED, rounding=ROUND_HALF_EVEN) if cost is not None else None


def _differs(old: UsageRecord, new: UsageRecord) -> bool:
    """True when re-pricing changes what would be stored (a prorated price's last digits do not)."""
    return (old.basis, _stored_money(old.cost), old.currency, old.price_version, old.model) != (
        new.basis,
        _stored_money(new.cost),
        new.currency,
        new.price_version,
        new.model,
    )


def reprice(
    engine: Engine, since: datetime, until: datetime, *, providers: Sequence[str] = (), apply: bool = False
) -> RepriceResult:
    """Price the window's stored estimates again; write the changed rows when ``apply``.

    Args:
        engine: the database.
        since: first bucket start included (aware UTC).
        until: first bucket start excluded.
        providers: only these providers (empty: all).
        apply: write the changed rows (otherwise only report them: a dry run).

    Returns:
        Rows read and changed, and the changes grouped by provider, model and price version.
    """
    result = RepriceResult(since=since, until=until, applied=apply)
    for start, end in _days(since, until):
        with engine.begin() as conn:
            changed = []
            for old in _stored(conn, start, end, providers):
                result.rows_read += 1
                new = repriced(old)
                if _differs(old, new):
                    _note(result, old, new)
                    changed.append(new)
            result.rows_changed += len(changed)
            if apply and changed:
                ingest(conn, changed)
    return result


__all__ = ["REPRICED_SOURCES", "Change", "RepriceResult", "reprice", "repriced"]
