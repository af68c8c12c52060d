"""``llm-usage reconcile`` (why the bill and usage x price differ) and ``llm-usage reprice``.

Both are thin: ``reconcile`` calls :func:`collector.query.reconcile.reconcile` and
:func:`~collector.query.reconcile.summarise` (what the Reconciliation page draws) and prints;
``reprice`` calls :func:`collector.core.reprice.reprice`. Windows use the same words and
``--until`` rule as ``llm-usage report`` (:func:`collector.core.windows.parse_window`, UTC days).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

import typer

from collector.cli.common import database
from collector.cli.report import _choice, _fail, _iso, _split, human_int, human_money
from collector.core import csvout
from collector.core.reprice import RepriceResult, reprice
from collector.core.settings import get_settings
from collector.core.sqltypes import canonical_decimal
from collector.core.windows import DateError, Window, parse_window
from collector.query.reconcile import (
    CAUSES,
    LABELS,
    PARTS,
    SUMMARY_DIMENSIONS,
    Reconciliation,
    Summary,
    parse_summary_by,
    reconcile,
    summarise,
)
from collector.query.report import Filters, QueryError, check_providers

FORMATS = ("table", "json", "csv")
#: Machine columns after the ``--by`` dimensions (json keys and csv header, stable).
MONEY_COLUMNS = ("billed", "estimated", "proxy", "otel", "outside_proxy")


def _money(value: Decimal | None) -> str | None:
    return str(canonical_decimal(value)) if value is not None else None


def _percent(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return str((value * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def machine_lines(summaries: Sequence[Summary], by: Sequence[str]) -> list[dict[str, Any]]:
    """Summaries as JSON-ready dicts: exact decimal strings, ISO 8601 UTC days, stable keys."""
    out = []
    for s in summaries:
        item: dict[str, Any] = {}
        for name in by:
            value = getattr(s, name)
            item[name] = _iso(value) if isinstance(value, datetime) else value
        item["currency"] = s.currency
        for name in MONEY_COLUMNS:
            item[name] = _money(getattr(s, name))
        item["unpriced_tokens"] = s.unpriced_tokens
        item["parts"] = {name: _money(s.parts[name]) for name in PARTS}
        item["causes"] = {name: _money(s.causes[name]) for name in CAUSES}
        item["residual_percent"] = _percent(s.ratio(s.residual))
        item["gap_before"] = _money(s.gap_before)
        item["gap_before_percent"] = _percent(s.ratio(s.gap_before))
        item["days"] = s.days
        item["flagged_days"] = s.flagged_days
        out.append(item)
    return out


def render_json(result: Reconciliation, window: Window, by: Sequence[str]) -> str:
    """One JSON object: the window, the lines by ``by``, the totals per currency, the notes."""
    body = {
        "window": {"since": _iso(window.start), "until": _iso(window.end)},
        "by": list(by),
        "threshold_percent": _percent(result.threshold),
        "lines": machine_lines(summarise(result, by), by),
        "totals": machine_lines(summarise(result, ()), ()),
        "notes": list(result.notes),
    }
    return json.dumps(body, indent=2)


def render_csv(result: Reconciliation, by: Sequence[str]) -> str:
    """CSV with a header: the ``--by`` dimensions, money, parts and causes flattened."""
    header = [*by, "currency", *MONEY_COLUMNS, "unpriced_tokens", *PARTS, *CAUSES]
    header += ["residual_percent", "gap_before", "gap_before_percent", "days", "flagged_days"]
    rows = []
    for item in machine_lines(summarise(result, by), by):
        flat = {**item, **item.pop("parts"), **item.pop("causes")}
        rows.append(["" if flat[h] is None else flat[h] for h in header])
    return csvout.to_csv(header, rows).rstrip("\n")  # the shared writer escapes formula cells


# -- the people's view ------------------------------------------------------------------------------


def _label(s: Summary) -> str:
    who = " / ".join(p for p in (s.provider, s.account) if p is not None) or "all providers"
    day = f", {s.day:%Y-%m-%d}" if s.day is not None else ""
    return f"{who or '(none)'}{day} ({s.currency})"


def _share(amount: Decimal, s: Summary) -> str:
    ratio = s.ratio(amount)
    return f"  ({_percent(ratio)} % of billed)" if ratio is not None else ""


def _waterfall(s: Summary) -> list[str]:
    """One summary as the steps from tokens at standard rates to the bill."""
    flagged = f", {s.flagged_days} flagged" if s.flagged_days else ""
    lines = [f"{_label(s)}: {s.days} day(s){flagged}"]
    money = s.currency
    rows = [("", LABELS["standard_tokens"], human_money(s.parts["standard_tokens"], money), "")]
    rows += [("+", LABELS[name], human_money(s.parts[name], money), "") for name in PARTS[1:]]
    rows.append(("=", "estimated (usage x price)", human_money(s.estimated or Decimal(0), money), ""))
    for name in CAUSES:
        extra = _share(s.causes[name], s) if name == "residual" else ""
        rows.append(("+", LABELS[name], human_money(s.causes[name], money), extra))
    rows.append(("=", "billed", human_money(s.billed or Decimal(0), money), ""))
    width = max(len(label) for _, label, _, _ in rows)
    lines += [f"  {sign:1} {label:<{width}}  {value:>12}{extra}" for sign, label, value, extra in rows]
    if s.proxy is not None:
        outside = s.outside_proxy
        out_text = f" · outside the proxy {human_money(outside, money)}" if outside is not None else ""
        lines.append(f"  proxy recorded {human_money(s.proxy, money)}{out_text}")
    if s.otel is not None:
        lines.append(f"  OpenTelemetry recorded {human_money(s.otel, money)}")
    if s.unpriced_tokens:
        lines.append(f"  unpriced usage: {human_int(s.unpriced_tokens)} tokens (no price in any table)")
    lines.append(f"  before attribution: billed - tokens at standard rates = {human_money(s.gap_before, money)}")
    return lines


def _day_table(summaries: Sequence[Summary], by: Sequence[str]) -> list[str]:
    """Many days: one compact row each (billed, estimated, the residual and the flag)."""
    head = [*[d for d in by if d != "day"], "day", "currency", "billed", "estimated", "residual", "% billed", "flag"]
    body = []
    for s in summaries:
        dims = [getattr(s, d) or "(none)" for d in by if d != "day"]
        ratio = s.ratio(s.residual)
        body.append(
            [
                *dims,
                f"{s.day:%Y-%m-%d}" if s.day else "",
                s.currency,
                human_money(s.billed, s.currency),
                human_money(s.estimated, s.currency),
                human_money(s.residual, s.currency),
                f"{_percent(ratio)} %" if ratio is not None else "—",
                "FLAGGED" if s.flagged_days else "",
            ]
        )
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return lines


def render_table(result: Reconciliation, window: Window, by: Sequence[str]) -> str:
    """Waterfalls per group (or a row per day with ``--by day``), then a footer."""
    summaries = summarise(result, by)
    footer = [
        f"window: {window.describe()} (UTC; [{_iso(window.start)}, {_iso(window.end)}))"
        f" · a day is flagged when its residual exceeds {_percent(result.threshold)} % of its billed usage"
    ]
    footer += [f"note: {n}" for n in result.notes]
    if not summaries:
        return "\n".join([f"{window.describe()} (UTC): nothing to reconcile", *footer[1:]])
    lines: list[str] = []
    if "day" in by:
        lines += [*_day_table(summaries, by), ""]
    else:
        for s in summaries:
            lines += [*_waterfall(s), ""]
    return "\n".join([*lines, *footer]).replace("\n\n\n", "\n\n")


# -- commands ---------------------------------------------------------------------------------------


def _window(since: str | None, until: str | None) -> Window:
    try:
        return parse_window(since, until)
    except DateError as exc:
        _fail(str(exc))


_BY_HELP = f"Comma-separated: {', '.join(SUMMARY_DIMENSIONS)} (default: provider)."


def reconcile_command(
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help="First day: YYYY-MM-DD, YYYY-MM, today, 7d, mtd.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="DATE", help="Last day included (same forms as --since).")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="DIMS", help=_BY_HELP),
    ] = None,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", metavar="NAME", help="Only these providers.")
    ] = None,
    account: Annotated[list[str] | None, typer.Option("--account", metavar="ID", help="Only these accounts.")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table | json | csv.")] = "table",
) -> None:
    """Billed vs usage x price per provider account, the gap split into named causes."""
    fmt = _choice("--format", fmt, FORMATS)
    window = _window(since, until)
    threshold = Decimal(str(get_settings().reconcile_residual_percent)) / 100
    try:
        dims = parse_summary_by(by)
        filters = Filters(since=window.start, until=window.end, providers=_split(provider), accounts=_split(account))
        engine = database()
        check_providers(engine, filters.providers)
        result = reconcile(engine, filters, threshold=threshold)
    except QueryError as exc:
        _fail(str(exc))
    renderers: dict[str, Callable[[], str]] = {
        "table": lambda: render_table(result, window, dims),
        "json": lambda: render_json(result, window, dims),
        "csv": lambda: render_csv(result, dims),
    }
    typer.echo(renderers[fmt]())


def render_reprice(result: RepriceResult) -> str:
    """The diff of a re-pricing, largest differences first."""
    verb = "re-priced" if result.applied else "would re-price"
    lines = [
        f"{_iso(result.since)} .. {_iso(result.until)}: {result.rows_read:,} estimated or unpriced row(s) read, "
        f"{verb} {result.rows_changed:,}"
    ]
    if not result.changes:
        return "\n".join([*lines, "nothing changes: every row already has today's prices"])
    head = ["provider", "model", "price version (old -> new)", "rows", "old", "new", "difference"]
    body = []
    for c in result.sorted_changes():
        body.append(
            [
                c.provider,
                c.model or "(none)",
                f"{c.old_version or 'unpriced'} -> {c.new_version or 'unpriced'}",
                f"{c.rows:,}",
                human_money(c.old_cost, "USD"),
                human_money(c.new_cost, "USD"),
                human_money(c.delta, "USD"),
            ]
        )
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    lines.append(f"total difference: {human_money(result.delta, 'USD')}")
    if not result.applied:
        lines.append("dry run: nothing was written; run again with --apply to store these prices")
    return "\n".join(lines)


def reprice_command(
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help="First day: YYYY-MM-DD, YYYY-MM, 7d, mtd.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="DATE", help="Last day included (same forms as --since).")
    ] = None,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", metavar="NAME", help="Only these providers.")
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Store the new prices (default: show the diff only).")] = False,
) -> None:
    """Price stored estimates again with today's tables and show (or, with --apply, store) the diff."""
    window = _window(since, until)
    engine = database()
    providers = _split(provider)
    try:
        check_providers(engine, providers)
    except QueryError as exc:
        _fail(str(exc))
    result = reprice(engine, window.start, window.end, providers=providers, apply=apply)
    typer.echo(render_reprice(result))


__all__ = [
    "machine_lines",
    "reconcile_command",
    "render_csv",
    "render_json",
    "render_reprice",
    "render_table",
    "reprice_command",
]
