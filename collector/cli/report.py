"""``llm-usage report`` and ``llm-usage status``: answers from the terminal.

Both are thin: they parse arguments, call :mod:`collector.query.report` (the same layer the dashboard
reads through) and print. Bad input is one line on stderr naming the argument and what it
accepts, with exit code 2 and no traceback; ``status --check`` exits 1 on a problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, NoReturn

import typer

from collector.cli.common import currency_code, database
from collector.core import csvout
from collector.core.schema import TOKEN_FIELDS
from collector.core.settings import get_settings
from collector.core.sqltypes import canonical_decimal
from collector.core.windows import DateError, Window, parse_tz, parse_window
from collector.finance.fx import RateBook
from collector.query.health import StatusResult, status
from collector.query.report import (
    DIMENSIONS,
    GRAINS,
    SECTIONS,
    SOURCES,
    Filters,
    QueryError,
    ReportResult,
    ReportRow,
    Sums,
    check_providers,
    parse_by,
    report,
)

FORMATS = ("table", "json", "csv")
BASIS_NAMES = ("preferred", "billed", "estimated")
#: Stable machine columns (json keys / csv header) after the ``--by`` dimensions.
MEASURE_COLUMNS: tuple[str, ...] = (
    "section",
    "basis",
    "currency",
    "cost",
    *TOKEN_FIELDS,
    "quantities",
    "counted_from",
)
#: How the table titles each report section after the first (the providers' own numbers).
SECTION_TITLES = {
    "provider": "",
    "subset": "usage another kind already holds (e.g. Claude Code is part of Messages): never added above",
    "proxy": "proxy (its own source: never added to the numbers above)",
    "otel": "otel (OpenTelemetry, its own source: never added to the provider numbers)",
}
_AGE_RE = re.compile(r"^(\d+)\s*([smhd])$")


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2 (bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated options, flattened and de-duplicated in order."""
    out: list[str] = []
    for value in values or ():
        for part in value.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


def _choice(name: str, value: str, accepted: Sequence[str]) -> str:
    low = value.strip().lower()
    if low not in accepted:
        _fail(f"{name}: unknown value {value!r}; accepted: {', '.join(accepted)}")
    return low


def _parse_top(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise QueryError("--top", f"cannot read {text!r}; accepted: a positive whole number")
    return int(text)


def parse_age(text: str) -> timedelta:
    """``3h``, ``90m``, ``2d`` or ``45s`` as a timedelta.

    Raises:
        ValueError: anything else.
    """
    match = _AGE_RE.match(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"--max-age: cannot read {text!r}; accepted: a positive number with s, m, h or d (e.g. 3h)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


# -- number formatting (people) -------------------------------------------------------------------


def human_int(value: int) -> str:
    """``1234567`` -> ``1.23M``; small numbers stay exact."""
    for bound, suffix in ((1_000_000_000_000, "T"), (1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= bound:
            scaled = value / bound
            return f"{scaled:.3g}{suffix}" if abs(scaled) < 100 else f"{scaled:,.0f}{suffix}"
    return str(value)


def human_money(cost: Decimal | None, currency: str) -> str:
    """``$1,234.57`` (USD) or ``1,234.57 EUR``; tiny amounts show as ``<$0.01``."""
    if cost is None:
        return "—"
    cents = cost.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if cents == 0 and cost != 0:
        return "<$0.01" if currency == "USD" else f"<0.01 {currency}"
    text = f"{cents:,.2f}"
    if currency == "USD":
        return f"-${text[1:]}" if text.startswith("-") else f"${text}"
    return f"{text} {currency}".strip()


def _human_quantities(quantities: dict[str, Decimal]) -> str:
    return ", ".join(f"{human_int(int(q)) if q == int(q) else q} {u or 'units'}" for u, q in quantities.items())


def _cost_cell(cost: Decimal | None, currency: str, basis: str) -> str:
    if cost is None:
        return "(in bill)" if basis == "billed" else "unpriced" if basis == "unpriced" else "—"
    return human_money(cost, currency)


def _align(header: list[str], rows: list[list[str]], numeric_from: int) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = [cell.rjust(widths[i]) if i >= numeric_from else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _period_label(period: datetime | None, grain: str | None) -> str:
    if period is None:
        return ""
    if grain == "hour":
        return period.strftime("%Y-%m-%d %H:%M")
    if grain == "month":
        return period.strftime("%Y-%m")
    return period.strftime("%Y-%m-%d")


def _table_rows(result: ReportResult, rows: list[ReportRow]) -> list[list[str]]:
    out = []
    for r in rows:
        cells = [_period_label(r.period, result.grain)] if result.grain else []
        cells += [r.dims[d] or "(none)" for d in result.by]
        cells += [
            r.basis,
            _cost_cell(r.cost, r.currency, r.basis),
            human_int(r.input_tokens),
            human_int(r.cache_read_tokens),
            human_int(r.cache_write_tokens),
            human_int(r.output_tokens),
            human_int(r.reasoning_tokens),
            human_int(r.requests),
            _human_quantities(r.quantities),
        ]
        out.append(cells)
    return out


def _total_rows(result: ReportResult, totals: dict[tuple[str, str], Sums], label: str) -> list[list[str]]:
    lead = len(result.by) + (1 if result.grain else 0)
    out = []
    for (currency, basis), s in sorted(totals.items(), key=lambda kv: (kv[0][1] != "billed", kv[0][1], kv[0][0])):
        cells = [label] + [""] * (lead - 1) if lead else []
        cells += [
            basis if lead else f"{label} {basis}",
            _cost_cell(s.cost, currency, basis),
            human_int(s.input_tokens),
            human_int(s.cache_read_tokens),
            human_int(s.cache_write_tokens),
            human_int(s.output_tokens),
            human_int(s.reasoning_tokens),
            human_int(s.requests),
            _human_quantities(s.quantities),
        ]
        out.append(cells)
    return out


def render_table(result: ReportResult, window: Window) -> str:
    """The people's view: aligned, humanised, with total rows and a footer."""
    zone = parse_tz(result.tz)
    footer = _footer(result, window, zone)
    if result.empty:
        return "\n".join([f"{window.describe(zone)} ({result.tz}): no usage recorded", *footer[1:]])
    head = ["period"] if result.grain else []
    head += list(result.by)
    head += ["basis", "cost", "input", "cache read", "cache write", "output", "reasoning", "requests", "other"]
    numeric_from = len(head) - 8
    lines: list[str] = []
    for section in SECTIONS:
        title = SECTION_TITLES.get(section, f"{section} (never added to the numbers above)")
        rows = [r for r in result.rows if r.section == section]
        if not rows:
            continue
        body = _table_rows(result, rows)
        if result.by or result.grain:  # without either, the rows already are the totals
            body += _total_rows(result, result.totals(section), "TOTAL")
        if title:
            lines += ["", title]
        lines += _align(head, body, numeric_from)
    return "\n".join([*lines, "", *footer])


def _footer(result: ReportResult, window: Window, zone: Any) -> list[str]:
    prices = ", ".join(result.price_versions) or "n/a (no estimates)"
    lines = [
        f"window: {window.describe(zone)} ({result.tz}; [{_iso(window.start)}, {_iso(window.end)}))"
        f" · basis: {result.basis} · prices: {prices}"
    ]
    lines += [f"note: {n}" for n in result.notes]
    return lines


# -- machine formats ----------------------------------------------------------------------------


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def machine_rows(result: ReportResult) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: exact Decimal strings, ISO 8601 UTC times, stable keys."""
    out = []
    for r in result.rows:
        item: dict[str, Any] = {}
        if result.grain:
            item["period"] = _iso(r.period) if r.period else None
            if result.tz != "UTC" and r.period is not None:
                item["period_local"] = r.period.isoformat()
        item.update({d: r.dims[d] for d in result.by})
        item["section"] = r.section
        item["basis"] = r.basis
        item["currency"] = r.currency
        item["cost"] = str(canonical_decimal(r.cost)) if r.cost is not None else None
        for name in TOKEN_FIELDS:
            item[name] = getattr(r, name)
        item["quantities"] = {u: str(canonical_decimal(q)) for u, q in r.quantities.items()}
        item["counted_from"] = sorted(r.sources)
        out.append(item)
    return out


def render_json(result: ReportResult) -> str:
    """A JSON array of rows (``[]`` when nothing matched)."""
    return json.dumps(machine_rows(result), indent=2)


def render_csv(result: ReportResult) -> str:
    """CSV with a header; ``quantities`` as ``unit=amount;unit=amount``."""
    header = (["period"] + (["period_local"] if result.tz != "UTC" else []) if result.grain else []) + list(result.by)
    header += list(MEASURE_COLUMNS)
    rows = []
    for item in machine_rows(result):
        item["quantities"] = ";".join(f"{u}={q}" for u, q in item["quantities"].items())
        item["counted_from"] = ";".join(item["counted_from"])
        item["cost"] = "" if item["cost"] is None else item["cost"]
        rows.append([item.get(h, "") for h in header])
    return csvout.to_csv(header, rows).rstrip("\n")


# -- commands -----------------------------------------------------------------------------------

_BY_HELP = f"Comma-separated dimensions ({', '.join(DIMENSIONS)}) and at most one grain ({', '.join(GRAINS)})."


def report_command(
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help="First day: YYYY-MM-DD, YYYY-MM, today, 7d, mtd.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="DATE", help="Last day included (same forms as --since).")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", metavar="DIMS", help=_BY_HELP)] = None,
    basis: Annotated[
        str, typer.Option("--basis", metavar="BASIS", help="preferred | billed | estimated.")
    ] = "preferred",
    source: Annotated[
        list[str] | None, typer.Option("--source", metavar="SOURCES", help="api,csv,proxy,otel (default api,csv).")
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", metavar="NAME", help="Only these providers (repeat or comma-separate)."),
    ] = None,
    account: Annotated[list[str] | None, typer.Option("--account", metavar="ID", help="Only these accounts.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", metavar="NAME", help="Only these models.")] = None,
    project: Annotated[list[str] | None, typer.Option("--project", metavar="ID", help="Only these projects.")] = None,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", metavar="ID", help="Only these API key ids.")
    ] = None,
    user: Annotated[list[str] | None, typer.Option("--user", metavar="ID", help="Only these users.")] = None,
    team: Annotated[list[str] | None, typer.Option("--team", metavar="NAME", help="Only these teams.")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table | json | csv.")] = "table",
    top: Annotated[
        str | None, typer.Option("--top", metavar="N", help="Keep the N groups with most spend; fold the rest.")
    ] = None,
    tz: Annotated[
        str, typer.Option("--tz", metavar="ZONE", help="Group hourly data by local days (Asia/Seoul).")
    ] = "UTC",
    currency: Annotated[
        str | None,
        typer.Option(
            "--currency",
            metavar="CODE",
            help="Show money in this currency, day by day with each day's rate (default LLM_USAGE_DISPLAY_CURRENCY).",
        ),
    ] = None,
) -> None:
    """Spend and usage for a window, grouped by dimensions and a time grain."""
    fmt = _choice("--format", fmt, FORMATS)
    basis_name = _choice("--basis", basis, BASIS_NAMES)
    sources = _split(source) or ("api", "csv")
    for name in sources:
        if name not in SOURCES:
            _fail(f"--source: unknown source {name!r}; accepted: {', '.join(SOURCES)}")
    try:
        dims, grain = parse_by(by)
        zone = parse_tz(tz)
        window = parse_window(since, until, tz=zone)
        filters = Filters(
            since=window.start,
            until=window.end,
            providers=_split(provider),
            accounts=_split(account),
            models=_split(model),
            projects=_split(project),
            api_keys=_split(api_key),
            users=_split(user),
            teams=_split(team),
            sources=sources,
        )
        top_n = _parse_top(top)
        target = currency_code(currency if currency is not None else get_settings().display_currency)
        engine = database()
        check_providers(engine, filters.providers)
        converter = RateBook.load(engine).day_rate if target else None
        result = report(
            engine, filters, by=dims, grain=grain, basis=basis_name, tz=tz, top=top_n, currency=target,
            converter=converter,
        )  # fmt: skip
    except (QueryError, DateError) as exc:
        _fail(str(exc))
    renderers: dict[str, Callable[[], str]] = {
        "table": lambda: render_table(result, window),
        "json": lambda: render_json(result),
        "csv": lambda: render_csv(result),
    }
    typer.echo(renderers[fmt]())


def _when(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "never"
    from collector.query.health import human_age

    shown = _iso(ts.replace(microsecond=0))
    return f"{shown} ({human_age(now - ts)} ago)" if ts <= now else shown


def render_status(result: StatusResult) -> str:
    """The people's view of :func:`collector.query.report.status`."""
    now = result.now
    lines = ["connections:"]
    if not result.connections:
        lines.append("  no connections configured")
    for c in result.connections or []:
        state = c.status or "unknown"
        lines.append(
            f"  {c.label or c.id} ({c.provider}, key {c.key_hint or '?'}): {state}"
            f"{'' if c.active else ' [inactive]'}, last success {_when(c.last_success, now)}"
        )
        if c.last_error:
            lines.append(f"    last error: {c.last_error}")
        for e in c.endpoints:
            run = f"; last run {e.last_run_status} {_when(e.last_run_at, now)}" if e.last_run_status else ""
            lines.append(f"    {e.endpoint}: complete up to {_when(e.newest_complete, now)}{run}")
    lines.append("imports:")
    if not result.imports:
        lines.append("  no CSV imports recorded")
    for i in result.imports or []:
        end = i.newest_period_end.date().isoformat() if i.newest_period_end else "none"
        failed = f", {i.failed} failed" if i.failed else ""
        lines.append(
            f"  {i.importer or '(unknown format)'} / {i.account or '(no account)'}: newest period ends {end}; "
            f"{i.files} file(s){failed}; last import {_when(i.last_imported, now)}"
        )
    lines.append("proxy:")
    p = result.proxy
    if p is None:
        lines.append("  no proxy events recorded")
    else:
        events = "n/a" if p.events_last_hour is None else f"{p.events_last_hour:,}"
        lines.append(
            f"  events in the last hour: {events}; newest {_when(p.newest_event, now)}; "
            f"spool: {p.spool_files} file(s), {human_int(p.spool_bytes)}B; "
            f"{p.not_rolled_up:,} event(s) not rolled up yet"
        )
    lines.append("data (newest bucket per source):")
    if not result.freshness:
        lines.append("  no usage recorded")
    for f in result.freshness:
        lines.append(f"  {f.source}/{f.provider}/{f.account or '-'}/{f.kind}: up to {_when(f.newest_bucket_end, now)}")
    lines.append("billed twice (one source counts, the others are kept):")
    if not result.billing_overlaps:
        lines.append("  no account-day is billed by two sources in the last 90 days")
    lines += [f"  {o}" for o in result.billing_overlaps]
    db = result.database
    size = f"{human_int(db.size_bytes)}B" if db.size_bytes is not None else "n/a"
    lines.append("database:")
    lines.append(
        f"  {db.backend} {db.url}: {db.usage_rows:,} usage rows, {db.daily_rows:,} daily rows, {size}; "
        f"migration {db.revision} (head {db.head})"
    )
    if result.problems:
        lines.append("problems:")
        lines += [f"  {p}" for p in result.problems]
    return "\n".join(lines)


def _status_json(result: StatusResult) -> str:
    def conv(value: Any) -> Any:
        if isinstance(value, datetime):
            return _iso(value)
        if isinstance(value, timedelta):
            return int(value.total_seconds())
        if isinstance(value, Decimal):
            return str(value)
        return str(value)

    from dataclasses import asdict

    return json.dumps(asdict(result), default=conv, indent=2)


def status_command(
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table | json.")] = "table",
    check: Annotated[bool, typer.Option("--check", help="Exit 1, one line per problem, if unhealthy.")] = False,
    max_age: Annotated[
        str, typer.Option("--max-age", metavar="AGE", help="Oldest acceptable last success, e.g. 3h, 90m, 1d.")
    ] = "3h",
) -> None:
    """Connections, imports, proxy and database health; ``--check`` for cron and monitoring."""
    fmt = _choice("--format", fmt, ("table", "json"))
    try:
        age = parse_age(max_age)
    except ValueError as exc:
        _fail(str(exc))
    settings = get_settings()
    result = status(database(), settings, max_age=age)
    if check:
        for problem in result.problems:
            typer.echo(problem)
        if result.problems:
            raise typer.Exit(1)
        typer.echo(f"ok: no problems (max age {max_age})")
        return
    typer.echo(_status_json(result) if fmt == "json" else render_status(result))
