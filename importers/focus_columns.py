"""FOCUS rows mapped column-wise: one Arrow batch of string cells to its records as columns.

Every derived value comes from the same methods of :class:`importers.focus._Generic` the row
mapper calls, applied once per distinct combination of the cells it depends on (a file of a
million rows has a few thousand distinct hours, SKUs and accounts). What is left per row runs in
Arrow: the money column is accepted only in its plain form (``-12.5``, at most 8 integer and 10
fractional digits), parsed exactly as a decimal and scaled to the integers the store keeps; token
quantities only as plain whole numbers. Rows with any other value (thousands separators, decimal
quantities, requests, other units) go through the row mapper one by one, and a value the row
mapper refuses raises :class:`importers.columnar.ColumnarFallback`, so the row path names the
file's line and column.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from collector.core.native import rowbuild as _rowbuild
from collector.core.schema import InvariantError, UsageRecord
from collector.core.sqltypes import MONEY_SCALE
from collector.core.store import RowColumns
from importers.base import ArrowColumns, ColumnBatch, RowError
from importers.columnar import ColumnarFallback, mapped, per_row

if TYPE_CHECKING:
    from importers.focus import _Generic

#: Money the columnar path parses itself: what ``Decimal(text)`` reads the same way, within the
#: per-cell limit (±10^8) and the store's scale (10 decimals); or zero with an exponent (``0E-10``,
#: how Python writes a quantized zero).
PLAIN_MONEY = r"^-?(?:(?:0|[1-9][0-9]{0,7})(?:\.[0-9]{1,10})?|0(?:\.0{1,10})?[eE][-+]?[0-9]{1,2})$"
PLAIN_COUNT = r"^[0-9]{1,15}$"
#: Token directions and the slots (input, cache read, cache write 5m / 1h, output) each fills.
SLOT_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens")
_SCALE = pa.scalar(Decimal(10**MONEY_SCALE), pa.decimal128(MONEY_SCALE + 1, 0))
_blake2b = hashlib.blake2b


def map_batch(g: _Generic, batch: pa.RecordBatch) -> ColumnBatch:
    """Map one batch (see the module docstring); raises ``ColumnarFallback`` for the row path."""
    try:
        return _map(g, batch)
    except (RowError, InvariantError) as exc:
        raise ColumnarFallback(str(exc)) from None


def _cell(batch: pa.RecordBatch, g: _Generic, logical: str) -> pa.Array:
    index = g.i[logical]
    return batch.column(index) if index >= 0 else pa.repeat("", batch.num_rows)


def _map(g: _Generic, batch: pa.RecordBatch) -> ColumnBatch:
    from importers.focus import SLOTS

    ctx, cols = g.ctx, g.cols
    n = batch.num_rows
    skipped = 0
    if not ctx.keep_all:
        idx, keeps = mapped([_cell(batch, g, "category"), _cell(batch, g, "service")], g.keep)
        mask = pa.array(keeps, pa.bool_()).take(idx)
        kept = pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
        skipped = n - kept
        if kept < n:
            batch = batch.filter(mask)
    if not batch.num_rows:
        return ColumnBatch(None, [], skipped)

    def sku(pname: str, service: str, sku: str, meter: str, desc: str, model: str, cc: str, cls: str, unit: str) -> Any:
        provider = g.provider(pname, service)
        model_id, direction, line_item = g.describe_sku(provider, sku, meter, desc, model)
        line_item, usage_row = g.charge(line_item, cc, cls)
        mult, base = g.unit_of(unit)
        tokens = bool(usage_row and direction and "token" in base)
        digits = 15 if mult == 1 else 9 if mult <= 10**6 else 0
        slots = tuple(i in SLOTS[direction] for i in range(5)) if direction else (False,) * 5
        return provider, model_id, line_item, not usage_row, tokens, digits if tokens else 0, mult, slots

    sku_cells = ("provider", "service", "sku", "meter", "description", "model", "charge_category", "charge_class")
    sku_idx, skus = mapped([_cell(batch, g, c) for c in (*sku_cells, "unit")], sku)
    cost = _cell(batch, g, "billed_cost")
    qty = _cell(batch, g, "quantity")
    qty_len = pc.binary_length(qty)
    ignore_qty = pa.array([s[3] for s in skus], pa.bool_()).take(sku_idx)
    digits = pa.array([s[5] for s in skus], pa.int32()).take(sku_idx)
    plain_tokens = pc.and_(pc.match_substring_regex(qty, PLAIN_COUNT), pc.less_equal(qty_len, digits))
    fast = pc.and_(
        pc.match_substring_regex(cost, PLAIN_MONEY),
        pc.or_(pc.or_(ignore_qty, pc.equal(qty_len, 0)), plain_tokens),
    )
    records: list[UsageRecord] = []
    if not pc.all(fast).as_py():
        slow = pc.indices_nonzero(pc.invert(fast)).to_pylist()
        width = len(cols.header)
        for r in slow:
            row = list(batch.slice(r, 1).to_pylist()[0].values())[:width]
            row.append("")
            rec = g.mapper(row)
            if rec is None:  # the keep filter already passed: cannot happen, but never drop a row silently
                raise ColumnarFallback("a kept row mapped to nothing")
            records.append(rec)
        batch = batch.filter(fast)
        sku_idx = sku_idx.filter(fast)
        cost, qty, qty_len = batch.column(g.i["billed_cost"]), _cell(batch, g, "quantity"), qty_len.filter(fast)
    if not batch.num_rows:
        return ColumnBatch(None, records, skipped)
    return ColumnBatch(_columns(g, batch, sku_idx, skus, cost, qty, qty_len), records, skipped)


def _columns(
    g: _Generic, batch: pa.RecordBatch, sku_idx: pa.Array, skus: list[Any], cost: pa.Array, qty: pa.Array, qty_len: Any
) -> RowColumns:
    """The fast rows' columns (every value already known to map as the row mapper maps it)."""
    ctx, cols = g.ctx, g.cols
    n = batch.num_rows
    start_ts = _times(g, _cell(batch, g, "start"), cols.name("start"))
    end_ts = _times(g, _cell(batch, g, "end"), cols.name("end"))
    if pc.any(pc.less_equal(end_ts, start_ts)).as_py():
        raise ColumnarFallback("a row ends before it starts")
    cur_idx, currencies = mapped([_cell(batch, g, "currency")], lambda c: ctx.currency(c, cols.name("currency")))
    currency: Any = currencies[0] if len(currencies) == 1 else per_row(cur_idx, currencies)
    # Tokens: the row's whole quantity times the unit's multiplier, in the direction's slots.
    tokens = pa.array([s[4] for s in skus], pa.bool_()).take(sku_idx)
    counted = pc.and_(tokens, pc.greater(qty_len, 0))
    mult = pa.array([s[6] for s in skus], pa.int64()).take(sku_idx)
    amount = pc.multiply(pc.cast(pc.if_else(counted, qty, "0"), pa.int64()), mult)
    #: Columns that vary by row as Arrow arrays: for the keys (_keys) and the import's totals.
    arrow: dict[str, pa.Array] = {}
    slot_values: dict[str, Any] = {}
    for i, name in enumerate(SLOT_FIELDS):
        if not any(s[7][i] and s[4] for s in skus):
            slot_values[name] = 0
            continue
        in_slot = pa.array([s[7][i] for s in skus], pa.bool_()).take(sku_idx)
        filled = pc.if_else(in_slot, amount, 0)
        arrow[name] = filled
        slot_values[name] = filled.to_pylist()
    # Fields that vary by row, also as Arrow strings for the keys (see _keys).
    provider = _sku_field(skus, 0, sku_idx, arrow, "provider")
    model = _sku_field(skus, 1, sku_idx, arrow, "model_raw")
    line_item = _sku_field(skus, 2, sku_idx, arrow, "line_item")
    if ctx.account:
        account: Any = ctx.account
    else:
        account = _per_value(_cell(batch, g, "billing_account"), g.fitted.__getitem__, arrow, "account")
    project = _per_value(_cell(batch, g, "sub_account"), g.fitted.__getitem__, arrow, "project")
    variant = _per_value(_cell(batch, g, "resource"), g.variants.__getitem__, arrow, "variant")
    team = _per_value(_cell(batch, g, "tags"), g.teams.__getitem__, arrow, "team")
    details: Any = ""
    if cols.has("effective_cost"):
        effective = batch.column(g.i["effective_cost"])
        differs = pc.and_(pc.greater(pc.binary_length(effective), 0), pc.not_equal(effective, cost))
        if pc.any(differs).as_py():
            details = [g.details(e, c) for e, c in zip(effective.to_pylist(), cost.to_pylist(), strict=True)]
    scaled = pc.cast(pc.multiply(pc.cast(cost, pa.decimal128(8 + MONEY_SCALE, MONEY_SCALE)), _SCALE), pa.int64())
    values: dict[str, Any] = {
        "provider": provider,
        "source": "csv",
        "kind": "focus",
        "account": account,
        "project": project,
        "api_key_id": "",
        "user_id": "",
        "model": model,
        "service_tier": "",
        "batch": False,
        "line_item": line_item,
        "variant": variant,
        "team": team,
        **slot_values,
        "reasoning_tokens": 0,
        "requests": 0,
        "quantity_unit": "",
        "currency": currency,
        "basis": "billed",
        "price_version": "",
        "source_ref": ctx.source_ref,
        "details": details,
        "model_raw": model,
    }
    keys = _keys(values, arrow, start_ts, end_ts, n)
    return ArrowColumns(
        size=n,
        values=values,
        start_ts=start_ts.to_pylist(),
        end_ts=end_ts.to_pylist(),
        cost=scaled.to_pylist(),
        quantity=0,
        keys=keys,
        arrow={**arrow, "start_ts": start_ts, "cost": scaled},
    )


def _times(g: _Generic, cells: pa.Array, column: str) -> pa.Array:
    """Epoch seconds of each row's timestamp, parsed once per distinct string by the row path's parser."""

    def epoch(text: str) -> int:
        value = g.ctx.when(text, column)
        if value.microsecond:
            raise ColumnarFallback("a bucket that does not start on a whole second")
        return int(value.timestamp())

    idx, values = mapped([cells], epoch)
    return pa.array(values, pa.int64()).take(idx)


def _per_value(cells: pa.Array, fn: Any, arrow: dict[str, pa.Array], name: str) -> Any:
    """``fn`` of each row's cell: one shared value, or a list (then also kept in ``arrow[name]``)."""
    idx, values = mapped([cells], fn)
    if len(values) == 1:
        return values[0]
    arrow[name] = pa.array(values, pa.string()).take(idx)
    return per_row(idx, values)


def _sku_field(skus: list[Any], at: int, sku_idx: pa.Array, arrow: dict[str, pa.Array], name: str) -> list[str]:
    """Each row's SKU-derived string (item ``at`` of its SKU's tuple), also kept in ``arrow[name]``."""
    values = [s[at] for s in skus]
    arrow[name] = pa.array(values, pa.string()).take(sku_idx)
    return per_row(sku_idx, values)


def _keys(
    values: dict[str, Any], arrow: dict[str, pa.Array], start_ts: pa.Array, end_ts: pa.Array, n: int
) -> list[bytes]:
    """Each row's ``record_key``: the same joined natural key :attr:`UsageRecord.record_key` hashes.

    Fields that vary by row are joined from their Arrow strings (``arrow``, taken from the few
    distinct values): converting the rows' Python lists back to Arrow cost about 0.15 s of CPU per
    million rows.
    """
    from collector.core.schema import KEY_FIELDS

    parts: list[Any] = []
    for name in KEY_FIELDS:
        if name == "bucket_start":
            parts.append(pc.cast(start_ts, pa.string()))
        elif name == "bucket_end":
            parts.append(pc.cast(end_ts, pa.string()))
        elif name == "batch":
            parts.append("1" if values[name] else "0")
        elif name in arrow:
            parts.append(arrow[name])
        else:
            value = values[name]
            parts.append(pa.array(value, pa.string()) if isinstance(value, list) else value)
    joined = pc.binary_join_element_wise(*parts, "\x1f")
    if not isinstance(joined, pa.Array):
        joined = pa.repeat(joined, n)
    joined = pc.cast(joined, pa.binary())
    if _rowbuild is not None and joined.null_count == 0:  # hashed straight from Arrow's buffers
        _, offsets, data = joined.buffers()
        data = data if data is not None else b""
        return _rowbuild.blake2b_16_column(offsets, data, joined.offset, len(joined), False)
    blake = _blake2b
    return [blake(k, digest_size=16).digest() for k in joined.to_pylist()]
