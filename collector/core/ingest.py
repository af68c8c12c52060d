"""The one ingest path: every source's records are priced once, summed where a source adds up, and upserted.

Providers (API sync), importers (CSV files), the proxy rollup and the demo generator build
validated :class:`~collector.core.schema.UsageRecord` values (the schema checks every rule when a
record is made) and hand them to :func:`ingest`, which

1. names each record's model by its canonical id (:mod:`collector.core.model_ids`; the source's
   own id stays in ``model_raw``, which the natural key holds), and prices each token record that
   carries no money yet, here and nowhere else
   (:func:`collector.core.pricing.estimate`; a model missing from the table stays ``unpriced``);
2. for sources whose rows *add up* under one natural key (a billing export's late duplicate
   lines, proxy events arriving for an hour already rolled up), adds what ``usage`` already holds
   for those keys, in the caller's transaction (:func:`add` is the one sum of two records);
3. upserts through :func:`collector.core.store.upsert`, the only writer of usage rows, and
   returns what it wrote.

Records are immutable: pricing and sums return new records (``dataclasses.replace``), so a
record is validated once and never changes behind the schema's back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine

from collector.core.gcpause import paused_gc
from collector.core.model_ids import canonical_model
from collector.core.pricing import estimate, wants_estimate
from collector.core.readahead import read_ahead
from collector.core.schema import RECORD_FIELDS, TOKEN_FIELDS, InvariantError, UsageRecord
from collector.core.settings import Settings
from collector.core.store import USAGE, RowColumns, UpsertResult, upsert, upsert_columns

AfterIngest = Callable[[Engine, Settings], None]
OnRecord = Callable[[UsageRecord], None]
#: Stored rows are read back for at most this many keys per statement.
_READ_CHUNK = 500


@dataclass(frozen=True)
class Hooks:
    """What a sync or an import runs after it stored rows, handed in by the application.

    Ingest code never imports the features that react to new data (budgets, alerts); the
    application (``collector/app.py``) assembles them and passes them down.
    """

    after_ingest: AfterIngest | None = None

    def ingested(self, engine: Engine, settings: Settings) -> None:
        """Run the after-ingest hook, if any."""
        if self.after_ingest is not None:
            self.after_ingest(engine, settings)


NO_HOOKS = Hooks()


class MergeError(ValueError):
    """Two records with one natural key that cannot be summed; names the column and why."""

    def __init__(self, column: str, value: str, rule: str) -> None:
        super().__init__(f"{column}: {rule}")
        self.column, self.value, self.rule = column, value, rule


def named(record: UsageRecord) -> UsageRecord:
    """The record under its canonical model id (the source's own id stays in ``model_raw``)."""
    if not record.model:
        return record
    canonical = canonical_model(record.provider, record.model_raw)
    return record if canonical == record.model else replace(record, model=canonical)


def priced(record: UsageRecord) -> UsageRecord:
    """The record with its estimate when it is usage without money, else the record itself."""
    return estimate(record) if wants_estimate(record) else record


def prepare(records: Iterable[UsageRecord], on_record: OnRecord | None = None) -> Iterator[UsageRecord]:
    """Name and price each record once and show it to ``on_record`` (an import's running totals)."""
    for rec in records:
        rec = priced(named(rec))
        if on_record is not None:
            on_record(rec)
        yield rec


def add(into: UsageRecord, rec: UsageRecord) -> UsageRecord:
    """The sum of two records with the same natural key (counts, quantities and money).

    Sums of valid records stay valid (design rule 4 is additive), and the result is validated
    again on construction. Billed and unbilled money never meet (rule 5); ``details`` that are
    JSON counters (the proxy's error and latency sums) add up, anything else is dropped.

    Raises:
        MergeError: one record is billed and the other not, currencies or units differ, or the
            sum breaks a schema rule (the per-row money limit).
    """
    if (into.basis == "billed") != (rec.basis == "billed"):
        raise MergeError("cost", "", "rows with and without a billed cost share one usage key")
    if into.cost is not None and rec.cost is not None and into.currency != rec.currency:
        raise MergeError("currency", rec.currency, f"the same usage key was already billed in {into.currency}")
    if into.quantity and rec.quantity and into.quantity_unit != rec.quantity_unit:
        raise MergeError("unit", rec.quantity_unit, f"the same usage key was already measured in {into.quantity_unit}")
    changes: dict[str, Any] = {name: getattr(into, name) + getattr(rec, name) for name in TOKEN_FIELDS}
    if rec.quantity:
        changes["quantity"] = into.quantity + rec.quantity
        changes["quantity_unit"] = rec.quantity_unit
    if rec.cost is not None:
        priced_one = into if into.cost is not None else rec
        changes["cost"] = (into.cost or Decimal(0)) + rec.cost
        changes["currency"] = priced_one.currency or rec.currency
        changes["basis"] = "billed" if into.basis == "billed" else "estimated"
        changes["price_version"] = into.price_version or rec.price_version
    changes["details"] = _add_details(into.details, rec.details)
    try:
        return replace(into, **changes)
    except InvariantError as exc:  # e.g. the sum passes the per-row money limit
        column = "cost" if "cost" in str(exc) else "quantity"
        raise MergeError(column, str(changes.get(column, "")), str(exc).split(": ", 1)[-1]) from None


def _add_details(a: str, b: str) -> str:
    """Counters in two ``details`` JSON objects, summed; ``''`` when either holds anything else."""
    try:
        left, right = json.loads(a or "{}"), json.loads(b or "{}")
    except ValueError:
        return ""
    if not (isinstance(left, dict) and isinstance(right, dict)):
        return ""
    values = [*left.values(), *right.values()]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return ""
    out = dict(left)
    for name, value in right.items():
        out[name] = round(out.get(name, 0) + value, 3)
    return json.dumps(out, sort_keys=True) if out else ""


def combine(records: Iterable[UsageRecord]) -> dict[bytes, UsageRecord]:
    """Records with the same natural key summed into one, by ``record_key``, in first-seen order."""
    out: dict[bytes, UsageRecord] = {}
    for rec in records:
        key = rec.record_key
        out[key] = add(out[key], rec) if key in out else rec
    return out


def _plus_stored(conn: Connection, combined: dict[bytes, UsageRecord]) -> list[UsageRecord]:
    """Each record plus the row ``usage`` already holds under its key (read in this transaction)."""
    cols = [USAGE.c[name] for name in RECORD_FIELDS]
    stmt = select(*cols).where(USAGE.c.record_key.in_(bindparam("keys", expanding=True)))
    keys = list(combined)
    for i in range(0, len(keys), _READ_CHUNK):
        for row in conn.execute(stmt, {"keys": keys[i : i + _READ_CHUNK]}):
            stored = UsageRecord(**dict(zip(RECORD_FIELDS, row, strict=True)))
            combined[stored.record_key] = add(stored, combined[stored.record_key])
    return list(combined.values())


def ingest(
    conn: Connection,
    records: Iterable[UsageRecord],
    *,
    additive: bool = False,
    on_record: OnRecord | None = None,
    batch_size: int = 5000,
    now: datetime | None = None,
) -> UpsertResult:
    """Price, (optionally) add to what is stored, and upsert records in the caller's transaction.

    Args:
        conn: an open connection inside a transaction, so the caller's bookkeeping (a sync's
            high-water mark, an import's log row, the proxy's rolled-up marks) commits with it.
        records: validated records; a generator is consumed in batches unless ``additive``.
        additive: the records are increments: records sharing a key are summed, and each is
            added to the row already stored under its key instead of replacing it. The records
            are held in memory (a proxy rollup chunk, an import's late duplicates).
        on_record: called with each record once it is priced.
        batch_size: records per ``executemany``.
        now: the ``updated_at`` stamp (tests).

    Returns:
        What :func:`collector.core.store.upsert` wrote.
    """
    stream: Iterable[UsageRecord] = prepare(records, on_record)
    if additive:
        stream = _plus_stored(conn, combine(stream))
    return upsert(conn, stream, batch_size=batch_size, now=now)


class CanonicalNames(dict[tuple[str, str], str]):
    """Canonical model ids per (provider, raw id), looked up once per distinct pair."""

    def __missing__(self, key: tuple[str, str]) -> str:
        value = self[key] = canonical_model(*key)
        return value


def named_columns(batch: RowColumns, names: dict[tuple[str, str], str] | None = None) -> RowColumns:
    """The batch with each row's ``model`` set to its canonical id, as :func:`named` does per record.

    A row without a model keeps ``''``; ``model_raw`` (in the key) stays the source's own id.
    """
    names = names if names is not None else CanonicalNames()
    values = batch.values
    provider, raw, model = values["provider"], values["model_raw"], values["model"]
    if not any(isinstance(v, list) for v in (provider, raw, model)):
        canonical: Any = names[provider, raw] if model else model
    else:
        pairs = zip(batch.column("provider"), batch.column("model_raw"), batch.column("model"), strict=False)
        canonical = [names[p, r] if m else m for p, r, m in pairs]
    return replace(batch, values={**values, "model": canonical})


def ingest_columns(
    conn: Connection,
    batches: Iterable[RowColumns],
    *,
    on_batch: Callable[[RowColumns], None] | None = None,
    now: datetime | None = None,
) -> UpsertResult:
    """:func:`ingest` for records held as columns (the columnar importers' bulk path).

    Each batch is named like a record (canonical model ids) and upserted; none is priced here,
    so every row must carry its money already (billed or estimated), which a caller checks
    before choosing this path. The batches are taken, named and passed to ``on_batch`` one
    batch ahead of the write, in another thread (:func:`collector.core.readahead.read_ahead`):
    on two cores reading overlaps writing, and an error still ends the write where it occurs.

    Args:
        conn: an open connection inside a transaction.
        batches: validated columns whose keys are distinct from each other and from every
            earlier batch (nothing is summed here).
        on_batch: called with each named batch (an import's running totals).
        now: the ``updated_at`` stamp (tests).
    """
    names = CanonicalNames()

    def stream() -> Iterator[RowColumns]:
        for batch in batches:
            if batch.cost is None or (isinstance(batch.cost, list) and None in batch.cost):
                raise ValueError("ingest_columns takes rows that carry their money; price the others as records")
            named_batch = named_columns(batch, names)
            if on_batch is not None:
                on_batch(named_batch)
            yield named_batch

    # Read, mapped, named and totalled a batch ahead of the write, in a thread of its own. The
    # cyclic collector waits for the whole write (see paused_gc): its collections, set off by
    # either thread's allocations, ran with the GIL held and took about 0.25 s of a 1M-row import.
    with paused_gc():
        return upsert_columns(conn, read_ahead(stream()), now=now)


def ingest_records(engine: Engine, records: Iterable[UsageRecord], **kwargs: Any) -> UpsertResult:
    """:func:`ingest` in a transaction of its own."""
    with engine.begin() as conn:
        return ingest(conn, records, **kwargs)


__all__ = [
    "NO_HOOKS",
    "AfterIngest",
    "CanonicalNames",
    "Hooks",
    "MergeError",
    "add",
    "combine",
    "ingest",
    "ingest_columns",
    "ingest_records",
    "named",
    "named_columns",
    "prepare",
    "priced",
]
