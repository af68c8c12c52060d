"""Reconciliation: what a provider billed beside what its usage costs at the price table, and the side views.

Three numbers per provider account, UTC day and currency, compared and never added
(design.md rule 5):

* **billed**: the provider's own charge (cost APIs, billing exports), read with ``basis="billed"``;
* **estimated**: the usage rows' quantities x the public price table, read with
  ``basis="estimated"`` (so billed rows are left out and every estimate counts, also on days a
  bill covers: that is the point of the comparison);
* **proxy**: the price-table value of what the proxy sidecar recorded (its own section of the
  same estimated read);
* **otel**: the same for what applications reported through OpenTelemetry (another view of the
  same calls, its own section too).

All three come from :func:`collector.query.report.report`, the function behind ``llm-usage
report``, so reconciliation shows the same money as every other view. Each line also carries the
estimate in parts and the gap in named causes (:mod:`collector.query.attribution`): tiers and
line items the price tables priced, unpriced models, bill-only lines, usage billed elsewhere,
credits, discounts, tax, one-sided days, and the residual; a day whose residual exceeds a share
of its bill is flagged. :func:`summarise` adds lines up by provider, account and/or day for the
``llm-usage reconcile`` command and the Reconciliation page alike. Usage with no price
(a model missing from the table) carries no money; its tokens are counted apart
(``unpriced_tokens``) because they are part of the gap, not zero.

Money of different currencies is never summed: each line is one currency. Estimates are in the
price table's currency (:data:`collector.core.pricing.CURRENCY`), so a bill in another currency
(an Azure export in EUR, say) stands on a line of its own, and unpriced tokens are counted on
the price table's line, where their estimate would have been.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Engine

from collector.core.price_table import PriceTable, active_table
from collector.core.pricing import CURRENCY as PRICE_TABLE_CURRENCY
from collector.query.attribution import CAUSES, LABELS, PARTS, Facts, attribute, classify, line_model
from collector.query.report import Filters, QueryError, ReportRow, report

#: Label of a billed charge that names neither a line item nor a model.
NO_BREAKDOWN = "(no breakdown)"
#: The sources a line can lack, in the order :attr:`DayLine.status` names them.
COMPARED = ("billed", "usage", "proxy", "otel")
#: Report sections read as their own column (compared, never added to the estimate).
SIDE_COLUMNS = ("proxy", "otel")
#: A day whose residual exceeds this share of its bill is flagged (``LLM_USAGE_RECONCILE_RESIDUAL_PERCENT``).
DEFAULT_THRESHOLD = Decimal("0.02")
#: What :func:`summarise` can group by (currency is always kept apart).
SUMMARY_DIMENSIONS = ("provider", "account", "day")

_Key = tuple[datetime, str, str, str]  # day, provider, account, currency
_Who = tuple[str, str, str]  # provider, account, currency


@dataclass(frozen=True)
class DayLine:
    """One provider account's money on one UTC day in one currency, per source.

    ``None`` means the source has no money for that line (no data, or only unpriced usage);
    ``missing`` names the sources that have none: ``proxy`` only where the account has proxy
    data on some other day of the window (an account nobody routes through the proxy does not
    lack it).
    """

    day: datetime
    provider: str
    account: str
    currency: str
    billed: Decimal | None
    estimated: Decimal | None
    proxy: Decimal | None
    unpriced_tokens: int = 0
    proxy_unpriced_tokens: int = 0
    missing: tuple[str, ...] = ()
    otel: Decimal | None = None
    otel_unpriced_tokens: int = 0
    #: The estimate in parts (:data:`collector.query.attribution.PARTS`); they add up to ``estimated``.
    parts: dict[str, Decimal] = field(default_factory=dict)
    #: ``billed - estimated`` in named causes (:data:`collector.query.attribution.CAUSES`).
    causes: dict[str, Decimal] = field(default_factory=dict)
    #: The residual exceeds the threshold share of the bill.
    flagged: bool = False

    @property
    def outside_proxy(self) -> Decimal | None:
        """Usage x price the proxy did not see (estimated - proxy), where the proxy covers the line."""
        if self.proxy is None or self.estimated is None:
            return None
        return self.estimated - self.proxy

    @property
    def gap(self) -> Decimal | None:
        """Estimated minus billed (positive: the price table says more than the bill)."""
        if self.billed is None or self.estimated is None:
            return None
        return self.estimated - self.billed

    @property
    def gap_ratio(self) -> Decimal | None:
        """:attr:`gap` as a share of the bill (0.1 = the estimate is 10 % above it)."""
        return _ratio(self.gap, self.billed)

    @property
    def proxy_gap_ratio(self) -> Decimal | None:
        """(proxy - billed) / billed: how much of the bill the proxy saw."""
        if self.proxy is None or self.billed is None:
            return None
        return _ratio(self.proxy - self.billed, self.billed)

    @property
    def otel_gap_ratio(self) -> Decimal | None:
        """(otel - billed) / billed: how much of the bill OpenTelemetry saw."""
        if self.otel is None or self.billed is None:
            return None
        return _ratio(self.otel - self.billed, self.billed)

    @property
    def status(self) -> str:
        """``complete``, or which sources the line lacks (``no billed data; no proxy data``)."""
        return "; ".join(f"no {m} data" for m in self.missing) if self.missing else "complete"


@dataclass(frozen=True)
class AccountLine:
    """One provider account and currency over the whole window.

    ``billed``/``estimated``/``proxy`` are the window's sums (``None`` when no day had that
    source). The gap is measured only over *paired* days, on which both the bill and the usage
    exist, so a day that one source has not delivered yet does not look like a discrepancy.
    """

    provider: str
    account: str
    currency: str
    billed: Decimal | None
    estimated: Decimal | None
    proxy: Decimal | None
    paired_billed: Decimal
    paired_estimated: Decimal
    days: int
    incomplete_days: int
    unpriced_tokens: int = 0
    otel: Decimal | None = None
    parts: dict[str, Decimal] = field(default_factory=dict)
    causes: dict[str, Decimal] = field(default_factory=dict)
    flagged_days: int = 0

    @property
    def paired_gap_ratio(self) -> Decimal | None:
        """(estimated - billed) / billed over the days that have both (None without any)."""
        return _ratio(self.paired_estimated - self.paired_billed, self.paired_billed)


@dataclass(frozen=True)
class Contributor:
    """One model's (usage x price) or one line item's (billed) money for a provider account."""

    provider: str
    account: str
    currency: str
    label: str
    cost: Decimal


@dataclass(frozen=True)
class Reconciliation:
    """Billed vs usage x price table vs proxy for a window, with the largest contributors.

    ``days`` is sorted by day, provider, account and currency; ``accounts`` by provider,
    account and currency; the contributors largest first.
    """

    filters: Filters
    days: tuple[DayLine, ...]
    accounts: tuple[AccountLine, ...]
    estimated_by_model: tuple[Contributor, ...]
    billed_by_line: tuple[Contributor, ...]
    notes: tuple[str, ...] = ()
    threshold: Decimal = DEFAULT_THRESHOLD

    def largest_gaps(self, n: int = 10) -> list[DayLine]:
        """The ``n`` days with the largest absolute gap between estimate and bill."""
        with_gap = [(abs(d.gap), d) for d in self.days if d.gap is not None]
        with_gap.sort(key=lambda pair: pair[0], reverse=True)
        return [d for _, d in with_gap[:n]]

    def contributors(self, kind: str, provider: str, account: str, currency: str, n: int = 10) -> list[Contributor]:
        """The ``n`` largest contributors of one account: ``kind`` is ``model`` or ``line_item``."""
        source = self.estimated_by_model if kind == "model" else self.billed_by_line
        mine = [c for c in source if (c.provider, c.account, c.currency) == (provider, account, currency)]
        return mine[:n]


def reconcile(
    engine: Engine,
    filters: Filters,
    *,
    proxy: bool = True,
    otel: bool = True,
    threshold: Decimal = DEFAULT_THRESHOLD,
) -> Reconciliation:
    """Billed, estimated and proxy money per provider account, UTC day and currency, with causes.

    Args:
        engine: the database.
        filters: the window (read on UTC days) and value filters; its ``sources`` choose which
            provider sources are compared.
        proxy: also read the proxy's rows for the proxy column (whatever ``filters.sources``
            says: they are compared, never added).
        otel: likewise the OpenTelemetry rows for the otel column.
        threshold: a day whose residual exceeds this share of its bill is flagged (0.02 = 2 %).

    Returns:
        The lines per day and per account, the largest contributors, and the reports' notes.
    """
    billed = report(engine, filters, by=("provider", "account", "line_item", "model"), grain="day", basis="billed")
    sides = tuple(name for name, wanted in (("proxy", proxy), ("otel", otel)) if wanted)
    sources = tuple(dict.fromkeys((*filters.sources, *sides)))
    estimated = report(engine, replace(filters, sources=sources), by=_ESTIMATE_BY, grain="day", basis="estimated")
    acc = _Accumulator(table=active_table())
    for row in billed.rows:
        acc.add_billed(row)
    for row in estimated.rows:
        acc.add_estimated(row)
    days = acc.day_lines(threshold)
    return Reconciliation(
        filters=filters,
        days=days,
        accounts=_account_lines(days),
        estimated_by_model=_ranked(acc.by_model),
        billed_by_line=_ranked(acc.by_line),
        notes=_notes(billed.notes, estimated.notes, days),
        threshold=threshold,
    )


def _notes(billed: Iterable[str], estimated: Iterable[str], days: Sequence[DayLine]) -> tuple[str, ...]:
    """The reports' notes that matter here: account-days billed twice, and the estimate's own.

    The notes explaining each report's basis rule (``basis ...``, usage "with no charge of its
    own" on billed days) describe the two reads, not the comparison, and are left out, as is the
    note on a side source (proxy, otel) that has no line in the window.
    """
    kept = [n for n in billed if n.startswith("billed twice")]
    kept += [n for n in estimated if not n.startswith("basis ")]
    absent = [side for side in SIDE_COLUMNS if all(getattr(d, side) is None for d in days)]
    kept = [n for n in kept if not any(n.startswith(f"{side} rows are listed separately") for side in absent)]
    return tuple(dict.fromkeys(kept))


#: The estimate is read per model, kind, tier and line item: enough to split it into its parts and
#: to know which usage is billed elsewhere.
_ESTIMATE_BY = ("provider", "account", "model", "kind", "service_tier", "line_item")


# -- internals ------------------------------------------------------------------------------------


@dataclass
class _Cell:
    billed: Decimal | None = None
    estimated: Decimal | None = None
    proxy: Decimal | None = None
    unpriced_tokens: int = 0
    proxy_unpriced_tokens: int = 0
    otel: Decimal | None = None
    otel_unpriced_tokens: int = 0
    facts: Facts = field(default_factory=Facts)


@dataclass
class _Accumulator:
    """Folds the two reports' rows into cells and contributor sums."""

    table: PriceTable
    cells: dict[_Key, _Cell] = field(default_factory=dict)
    by_model: dict[tuple[str, str, str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    by_line: dict[tuple[str, str, str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def cell(self, row: ReportRow, currency: str) -> _Cell:
        assert row.period is not None  # both reads have a day grain
        key = (row.period, row.dims["provider"], row.dims["account"], currency)
        return self.cells.setdefault(key, _Cell())

    def add_billed(self, row: ReportRow) -> None:
        # On billed days, usage rows without a charge of their own come back with no cost.
        if row.cost is None or row.section != "provider":
            return
        c = self.cell(row, row.currency)
        c.billed = _plus(c.billed, row.cost)
        provider, line_item = row.dims["provider"], row.dims["line_item"]
        label = line_item or row.dims["model"] or NO_BREAKDOWN
        self.by_line[(provider, row.dims["account"], row.currency, label)] += row.cost
        cls = classify(self.table, provider, line_item, row.cost)
        c.facts.bill_lines.append((cls, line_model(provider, line_item, row.dims["model"]), row.cost))

    def add_estimated(self, row: ReportRow) -> None:
        if row.section == "subset":  # usage another kind already holds (Claude Code): never added
            return
        side = row.section if row.section in SIDE_COLUMNS else ""
        if row.basis == "unpriced":
            c = self.cell(row, PRICE_TABLE_CURRENCY)
            tokens = row.input_tokens + row.output_tokens
            name = f"{side}_unpriced_tokens" if side else "unpriced_tokens"
            setattr(c, name, getattr(c, name) + tokens)
            if not side:
                c.facts.unpriced_models.add(row.dims["model"])
            return
        if row.cost is None:
            return
        c = self.cell(row, row.currency)
        if side:
            setattr(c, side, _plus(getattr(c, side), row.cost))
            return
        c.estimated = _plus(c.estimated, row.cost)
        provider, model = row.dims["provider"], row.dims["model"]
        self.by_model[(provider, row.dims["account"], row.currency, model)] += row.cost
        assert row.period is not None
        counts = {name: getattr(row, name) for name in _PRICED_TOKENS}
        elsewhere = self.table.billed_elsewhere(provider, row.dims["service_tier"])
        c.facts.add_estimate(provider, model, row.period.date(), row.cost, counts, elsewhere=elsewhere)

    def day_lines(self, threshold: Decimal) -> tuple[DayLine, ...]:
        with_proxy = {k[1:] for k, c in self.cells.items() if c.proxy is not None}
        with_otel = {k[1:] for k, c in self.cells.items() if c.otel is not None}
        lines = []
        for key, c in sorted(self.cells.items()):
            day, provider, account, currency = key
            present = (c.billed is not None, c.estimated is not None, c.proxy is not None, c.otel is not None)
            expected = (True, True, key[1:] in with_proxy, key[1:] in with_otel)
            missing = tuple(
                name for name, has, wants in zip(COMPARED, present, expected, strict=True) if wants and not has
            )
            causes = attribute(c.billed, c.estimated, c.facts)
            parts = dict(c.facts.parts) if c.estimated is not None else dict.fromkeys(PARTS, Decimal(0))
            lines.append(
                DayLine(
                    day,
                    provider,
                    account,
                    currency,
                    c.billed,
                    c.estimated,
                    c.proxy,
                    c.unpriced_tokens,
                    c.proxy_unpriced_tokens,
                    missing,
                    c.otel,
                    c.otel_unpriced_tokens,
                    parts,
                    causes,
                    _flagged(c.billed, causes, threshold),
                )
            )
        return tuple(lines)


#: The token counts a price applies to (``input_tokens`` is total input, design rule 4).
_PRICED_TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
)


def _flagged(billed: Decimal | None, causes: dict[str, Decimal], threshold: Decimal) -> bool:
    """True when the residual is more than ``threshold`` of the day's billed usage.

    Billed usage is the bill without its credits, discounts and tax, so a day a credit brought
    near zero is not flagged for the cents of rounding left on its usage lines.
    """
    if billed is None:
        return False
    usage = billed - causes["credits"] - causes["discounts"] - causes["tax"]
    return abs(causes["residual"]) > threshold * abs(usage)


def _account_lines(days: Iterable[DayLine]) -> tuple[AccountLine, ...]:
    groups: dict[_Who, list[DayLine]] = defaultdict(list)
    for d in days:
        groups[(d.provider, d.account, d.currency)].append(d)
    out = []
    for (provider, account, currency), lines in sorted(groups.items()):
        paired = [d for d in lines if d.billed is not None and d.estimated is not None]
        out.append(
            AccountLine(
                provider=provider,
                account=account,
                currency=currency,
                billed=_sum(d.billed for d in lines),
                estimated=_sum(d.estimated for d in lines),
                proxy=_sum(d.proxy for d in lines),
                paired_billed=sum((d.billed or Decimal(0) for d in paired), Decimal(0)),
                paired_estimated=sum((d.estimated or Decimal(0) for d in paired), Decimal(0)),
                days=len(lines),
                incomplete_days=sum(1 for d in lines if d.missing),
                unpriced_tokens=sum(d.unpriced_tokens for d in lines),
                otel=_sum(d.otel for d in lines),
                parts=_add_up(d.parts for d in lines),
                causes=_add_up(d.causes for d in lines),
                flagged_days=sum(1 for d in lines if d.flagged),
            )
        )
    return tuple(out)


def _add_up(items: Iterable[dict[str, Decimal]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for item in items:
        for name, value in item.items():
            out[name] = out.get(name, Decimal(0)) + value
    return out


# -- summaries (the command and the page) ---------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Reconciliation lines added up by some of provider, account and day, in one currency.

    ``provider``, ``account`` and ``day`` are ``None`` when not grouped by. ``gap_before`` is the
    bill less the tokens at standard rates: the gap a tool that ignores tiers and line items would
    show with no cause; ``causes["residual"]`` is what remains after attribution.
    """

    provider: str | None
    account: str | None
    day: datetime | None
    currency: str
    billed: Decimal | None
    estimated: Decimal | None
    proxy: Decimal | None
    otel: Decimal | None
    unpriced_tokens: int
    parts: dict[str, Decimal]
    causes: dict[str, Decimal]
    days: int
    flagged_days: int

    @property
    def residual(self) -> Decimal:
        """The unexplained rest of ``billed - estimated``."""
        return self.causes.get("residual", Decimal(0))

    @property
    def gap_before(self) -> Decimal:
        """Billed less the tokens at standard rates (what was unexplained before attribution)."""
        return (self.billed or Decimal(0)) - self.parts.get("standard_tokens", Decimal(0))

    @property
    def outside_proxy(self) -> Decimal | None:
        """Estimated - proxy: usage the provider saw that the proxy did not (where the proxy reports)."""
        if self.proxy is None or self.estimated is None:
            return None
        return self.estimated - self.proxy

    def ratio(self, amount: Decimal) -> Decimal | None:
        """``amount`` as a share of the bill (None without a bill)."""
        return _ratio(amount, self.billed)


def parse_summary_by(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``provider,account,day`` as a tuple of :data:`SUMMARY_DIMENSIONS` (default ``provider``).

    Raises:
        QueryError: an unknown or repeated name.
    """
    items = text.split(",") if isinstance(text, str) else list(text or ())
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in SUMMARY_DIMENSIONS:
            raise QueryError("--by", f"unknown dimension {name!r}; accepted: {', '.join(SUMMARY_DIMENSIONS)}")
        if name in out:
            raise QueryError("--by", f"{name!r} is given twice")
        out.append(name)
    return tuple(out) or ("provider",)


def summarise(result: Reconciliation, by: Sequence[str] = ("provider",)) -> list[Summary]:
    """The day lines added up by ``by`` (and currency), sorted by those keys."""
    groups: dict[tuple[str | None, str | None, datetime | None, str], list[DayLine]] = defaultdict(list)
    for d in result.days:
        key = (
            d.provider if "provider" in by else None,
            d.account if "account" in by else None,
            d.day if "day" in by else None,
            d.currency,
        )
        groups[key].append(d)
    out = []
    for (provider, account, day, currency), lines in groups.items():
        out.append(
            Summary(
                provider=provider,
                account=account,
                day=day,
                currency=currency,
                billed=_sum(d.billed for d in lines),
                estimated=_sum(d.estimated for d in lines),
                proxy=_sum(d.proxy for d in lines),
                otel=_sum(d.otel for d in lines),
                unpriced_tokens=sum(d.unpriced_tokens for d in lines),
                parts={name: _add_up(d.parts for d in lines).get(name, Decimal(0)) for name in PARTS},
                causes={name: _add_up(d.causes for d in lines).get(name, Decimal(0)) for name in CAUSES},
                days=len({d.day for d in lines}),
                flagged_days=len({d.day for d in lines if d.flagged}),
            )
        )
    out.sort(key=lambda s: (s.provider or "", s.account or "", s.day.timestamp() if s.day else 0.0, s.currency))
    return out


def _ranked(sums: dict[tuple[str, str, str, str], Decimal]) -> tuple[Contributor, ...]:
    items = [Contributor(p, a, c, label, cost) for (p, a, c, label), cost in sums.items()]
    return tuple(sorted(items, key=lambda x: (-x.cost, x.provider, x.account, x.currency, x.label)))


def _plus(total: Decimal | None, amount: Decimal) -> Decimal:
    return amount if total is None else total + amount


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    present = [v for v in values if v is not None]
    return sum(present, Decimal(0)) if present else None


def _ratio(part: Decimal | None, whole: Decimal | None) -> Decimal | None:
    if part is None or whole is None or whole == 0:
        return None
    return part / whole


__all__ = [
    "CAUSES",
    "COMPARED",
    "DEFAULT_THRESHOLD",
    "LABELS",
    "NO_BREAKDOWN",
    "PARTS",
    "PRICE_TABLE_CURRENCY",
    "SUMMARY_DIMENSIONS",
    "AccountLine",
    "Contributor",
    "DayLine",
    "Reconciliation",
    "Summary",
    "parse_summary_by",
    "reconcile",
    "summarise",
]
