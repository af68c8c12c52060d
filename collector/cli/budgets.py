"""``llm-usage budgets | alerts | teams | fx | export | anomalies``: thin commands over the library.

Every command opens the database through :func:`collector.cli.common.database` and turns the
library's errors (bad budget, bad rules file, no FX rate ...) into one ``error:`` line and exit
code 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from collector.cli.common import currency_code, database, echo_json, list_format
from collector.core.settings import get_settings
from collector.core.windows import DateError, day_range
from collector.finance import alerts, budgets, chargeback, fx
from collector.finance.anomaly import SCOPE_DIMENSIONS, AnomalyError, find_anomalies, new_spend
from collector.finance.export import FORMATS, ExportError, export
from collector.finance.forecast import ForecastError
from collector.query.report import QueryError

budgets_app = typer.Typer(help="Budgets per scope with alert thresholds and forecasts.", no_args_is_help=True)
alerts_app = typer.Typer(help="Notifications (apprise URLs in LLM_USAGE_ALERT_URLS).", no_args_is_help=True)
teams_app = typer.Typer(help="Team rules (versioned) and the monthly chargeback.", no_args_is_help=True)
fx_app = typer.Typer(help="Exchange rates for the display currency.", no_args_is_help=True)

_SCOPE_HELP = f"Scopes (repeat the option): {', '.join(SCOPE_DIMENSIONS)}; default all and provider."
#: Bad arguments (exit 2, like every command's): a value the command cannot use as given.
_ARGUMENT_ERRORS = (budgets.BudgetError, ExportError, AnomalyError, ForecastError, DateError, QueryError)
#: The operation failed on what it found (exit 1): a refused file, no rate, an undeliverable alert.
_ERRORS = (alerts.AlertError, chargeback.ChargebackError, fx.FxError)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except _ARGUMENT_ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except _ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _day(text: str, argument: str) -> datetime:
    return day_range(text, now=_now(), argument=argument)[0]


def _decimal(text: str, argument: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise budgets.BudgetError(f"{argument}: {text!r} is not a number") from exc
    return value


# -- budgets --------------------------------------------------------------------------------------


@budgets_app.command("list")
def budgets_list(
    fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json."),
) -> None:
    """List budgets."""
    fmt = list_format(fmt)
    engine = database()
    rows = budgets.list_budgets(engine)
    if fmt == "json":
        fields = ("id", "name", "scope", "scope_value", "amount", "currency", "period", "starts_at", "ends_at",
                  "forecast_threshold", "active", "enforce", "lifted_until")  # fmt: skip
        echo_json({**{f: getattr(b, f) for f in fields}, "thresholds": list(b.thresholds)} for b in rows)
        return
    if not rows:
        typer.echo("no budgets: add one with `llm-usage budgets add`")
    for b in rows:
        period = b.period if b.period == "month" else f"{b.starts_at:%Y-%m-%d}..{b.ends_at:%Y-%m-%d}"
        state = "" if b.active else " (paused)"
        if b.enforce:
            lifted = b.lifted_until is not None and b.lifted_until > _now()
            state += f"; enforced (lifted until {b.lifted_until:%Y-%m-%d})" if lifted else "; enforced by the proxy"
        thresholds = ",".join(map(str, b.thresholds))
        typer.echo(
            f"#{b.id} {b.name}: {b.scope_label} {b.amount:,.2f} {b.currency} per {period}; "
            f"alerts at {thresholds}% and forecast >{b.forecast_threshold}%{state}"
        )


@budgets_app.command("add")
def budgets_add(
    name: str = typer.Option(..., help="A name people recognise."),
    amount: str = typer.Option(..., help="Amount per period, e.g. 5000."),
    scope: str = typer.Option("all", help=f"One of {', '.join(budgets.SCOPES)}."),
    value: str = typer.Option("", "--value", help="The provider / account / project / key id / team."),
    currency: str = typer.Option("USD", help="ISO currency of the amount."),
    thresholds: str = typer.Option("", help="Alert percentages (default LLM_USAGE_BUDGET_THRESHOLDS)."),
    forecast_threshold: int = typer.Option(100, help="Alert when the forecast passes this % (0 = off)."),
    start: str = typer.Option("", help="Custom period start day (YYYY-MM-DD); default: every month."),
    end: str = typer.Option("", help="Custom period last day (inclusive)."),
    allow_unknown: bool = typer.Option(
        False, "--allow-unknown", help="Keep a scope value the data has never had (e.g. a project not live yet)."
    ),
    enforce: bool = typer.Option(
        False,
        "--enforce",
        help="The proxy refuses calls in scope (with a monitor token) once spend reaches the amount.",
    ),
) -> None:
    """Add a budget (a scope value the data never had is refused, listing the known ones)."""
    with _errors():
        engine = database()
        custom = bool(start or end)
        bid = budgets.create_budget(
            engine,
            name=name,
            scope=scope,
            scope_value=value,
            amount=_decimal(amount, "--amount"),
            currency=currency,
            thresholds=thresholds or get_settings().budget_thresholds,
            forecast_threshold=forecast_threshold,
            period="custom" if custom else "month",
            starts_at=_day(start, "--start") if start else None,
            ends_at=day_range(end, now=_now(), argument="--end")[1] if end else None,
            allow_unknown=allow_unknown,
            enforce=enforce,
        )
        typer.echo(f"budget #{bid} added" + (" (enforced by the proxy)" if enforce else ""))


@budgets_app.command("set")
def budgets_set(
    budget_id: int = typer.Argument(..., help="Budget id (see `budgets list`)."),
    amount: str = typer.Option("", help="New amount."),
    thresholds: str = typer.Option("", help="New alert percentages."),
    forecast_threshold: int | None = typer.Option(None, help="New forecast threshold (0 = off)."),
    name: str = typer.Option("", help="New name."),
    active: bool | None = typer.Option(None, "--active/--paused", help="Resume or pause alerts."),
) -> None:
    """Change a budget."""
    with _errors():
        changes: dict[str, Any] = {}
        if amount:
            changes["amount"] = _decimal(amount, "--amount")
        if thresholds:
            changes["thresholds"] = thresholds
        if forecast_threshold is not None:
            changes["forecast_threshold"] = forecast_threshold
        if name:
            changes["name"] = name
        if active is not None:
            changes["active"] = active
        b = budgets.update_budget(database(), budget_id, **changes)
        typer.echo(f"budget #{b.id} updated")


@budgets_app.command("enforce")
def budgets_enforce(
    budget_id: int = typer.Argument(..., help="Budget id."),
    off: bool = typer.Option(False, "--off", help="Stop enforcing (alerts only, as before)."),
) -> None:
    """Make a budget a cap: the proxy refuses calls in its scope once spend reaches the amount."""
    from collector.finance.caps import set_enforce

    with _errors():
        b = set_enforce(database(), budget_id, not off)
        typer.echo(f"budget #{b.id} " + ("enforced by the proxy" if b.enforce else "no longer enforced"))


@budgets_app.command("lift")
def budgets_lift(budget_id: int = typer.Argument(..., help="Budget id.")) -> None:
    """Lift an enforced budget's cap until the end of its current period (admins)."""
    from collector.finance.caps import lift

    with _errors():
        until = lift(database(), budget_id, _now())
        typer.echo(f"budget #{budget_id} lifted until {until:%Y-%m-%d %H:%M} UTC")


@budgets_app.command("remove")
def budgets_remove(budget_id: int = typer.Argument(..., help="Budget id.")) -> None:
    """Delete a budget (its alert history stays)."""
    with _errors():
        budgets.delete_budget(database(), budget_id)
        typer.echo(f"budget #{budget_id} removed")


@budgets_app.command("status")
def budgets_status(
    currency: str | None = typer.Option(
        None,
        "--currency",
        help="Also show each spend in this currency, each day at its rate "
        "(default LLM_USAGE_DISPLAY_CURRENCY; '' = only the budget's currency).",
    ),
) -> None:
    """Spend, percentage and forecast of every active budget (sends nothing)."""
    display = currency_code(currency if currency is not None else get_settings().display_currency)
    with _errors():
        engine = database()
        rates = fx.RateBook.load(engine)
        found = False
        unconverted: list[str] = []
        for b in budgets.list_budgets(engine, active_only=True):
            st = budgets.budget_status(engine, b, _now(), rates, display=display)
            if st is None:
                continue
            found = True
            typer.echo(
                f"#{b.id} {b.name} ({b.scope_label}): {st.spent:,.2f} of {b.amount:,.2f} {b.currency} "
                f"({st.percent:.0f}%); {st.forecast.describe(b.currency)}"
            )
            if st.shown is not None:
                typer.echo(f"   = {st.shown:,.2f} {st.shown_currency} (each day at its own rate)")
                unconverted += [n for n in st.shown_notes if n not in unconverted]
            for note in st.notes:
                typer.echo(f"   note: {note}")
        for note in unconverted:  # once for the whole listing, not once per budget
            typer.echo(f"note: not in {display}: {note}")
        if not found:
            typer.echo("no active budget covers today")


@budgets_app.command("forecast")
def budgets_forecast(
    scope: str = typer.Option("all", help=f"One of {', '.join(budgets.SCOPES)}."),
    value: str = typer.Option("", "--value", help="The provider / account / project / key id / team."),
    currency: str = typer.Option("USD", help="Currency to forecast in."),
) -> None:
    """This month's spend so far and its month-end forecast for any scope."""
    with _errors():
        spent, forecast, notes = budgets.scope_forecast(database(), scope, value, currency=currency.upper())
        label = "all spend" if scope == "all" else f"{scope}={value}"
        typer.echo(f"{label}: spent {spent:,.2f} {currency.upper()} this month; {forecast.describe(currency.upper())}")
        for note in notes:
            typer.echo(f"note: {note}")


@budgets_app.command("evaluate")
def budgets_evaluate(anomalies: bool = typer.Option(True, help="Also check yesterday for anomalies.")) -> None:
    """Evaluate budgets now and send the alerts that are due (what the scheduler does hourly)."""
    with _errors():
        result = budgets.evaluate(database(), get_settings(), check_anomalies=anomalies)
        typer.echo(f"{len(result.statuses)} budget(s), {len(result.anomalies)} anomaly(ies), {len(result.sent)} sent")
        for key in result.sent:
            typer.echo(f"sent {key}")


# -- alerts ---------------------------------------------------------------------------------------


@alerts_app.command("test")
def alerts_test() -> None:
    """Send a test message to every configured channel."""
    with _errors():
        channels = alerts.send_test(get_settings())
        typer.echo(f"test message sent to: {channels}")


@alerts_app.command("list")
def alerts_list(
    limit: int = typer.Option(20, help="How many, newest first."),
    fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json."),
) -> None:
    """Alerts sent (or failed, or recorded without a channel)."""
    fmt = list_format(fmt)
    rows = alerts.recent_alerts(database(), limit)
    if fmt == "json":
        echo_json(
            {"key": a.key, "kind": a.kind, "status": a.status, "title": a.title, "created_at": a.created_at,
             "sent_at": a.sent_at, "error": a.error}
            for a in rows
        )  # fmt: skip
        return
    if not rows:
        typer.echo("no alerts yet")
    for a in rows:
        error = f"  error: {a.error}" if a.error else ""
        typer.echo(f"{a.created_at:%Y-%m-%d %H:%M}Z {a.status:<10} {a.title}{error}")


# -- teams and chargeback --------------------------------------------------------------------------


@teams_app.command("rules")
def teams_rules(version: int | None = typer.Option(None, help="A past version (default: newest).")) -> None:
    """Print the team rules as CSV (the format `teams set-rules` reads)."""
    with _errors():
        rules = chargeback.load_rules(database(), version)
        typer.echo(f"# version {rules.version}" + (f" by {rules.created_by}" if rules.created_by else ""))
        typer.echo(chargeback.rules_to_csv(rules.rules), nl=False)


@teams_app.command("set-rules")
def teams_set_rules(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV: match_field,pattern,team,...")],
    by: str = typer.Option("cli", help="Who is saving (kept with the version)."),
) -> None:
    """Save a rules file as the new version of the rule list."""
    with _errors():
        rules = chargeback.rules_from_csv(file.read_text(encoding="utf-8"))
        version = chargeback.save_rules(database(), rules, created_by=by)
        typer.echo(f"saved {len(rules)} rule(s) as version {version}")


@teams_app.command("history")
def teams_history() -> None:
    """Every saved version of the rules."""
    for rs in chargeback.rule_versions(database()):
        when = f"{rs.created_at:%Y-%m-%d %H:%M}Z" if rs.created_at else ""
        typer.echo(f"version {rs.version}: {len(rs.rules)} rule(s) {when} {rs.created_by}".rstrip())


@teams_app.command("chargeback")
def teams_chargeback(
    month: str = typer.Option(..., help="YYYY-MM (UTC month)."),
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the CSV here ('-' = standard output).")] = None,
    version: int | None = typer.Option(None, help="Rules version (default: newest)."),
    source: str = typer.Option(
        "provider",
        help="provider (the month's spend), proxy (its estimated traffic; monitor-token rules) or otel.",
    ),
    currency: str | None = typer.Option(
        None,
        metavar="CODE",
        help="Charge in this currency, each day at its rate (default LLM_USAGE_DISPLAY_CURRENCY; '' = as billed).",
    ),
) -> None:
    """A month's spend per team and cost centre; the lines add up to the month's spend."""
    with _errors():
        first = _day(month, "--month").date().replace(day=1)
        target = currency_code(currency if currency is not None else get_settings().display_currency)
        engine = database()
        rules = chargeback.load_rules(engine, version)
        cb = chargeback.monthly_chargeback(
            engine, first, rules=rules, source=source, currency=target,
            converter=fx.RateBook.load(engine).day_rate if target else None,
        )  # fmt: skip
        text = chargeback.chargeback_csv(cb)
        if csv_out is not None and str(csv_out) == "-":
            typer.echo(text, nl=False)
            return
        if csv_out is not None:
            csv_out.write_text(text, encoding="utf-8")
        for ln in cb.lines:
            typer.echo(f"{ln.team:<24} {ln.cost_centre:<12} {ln.cents:>14,.2f} {ln.currency}")
        for currency, total in sorted(cb.totals.items()):
            typer.echo(f"{'TOTAL':<24} {'':<12} {total:>14,.2f} {currency}")
        for note in cb.notes:
            typer.echo(f"note: {note}")
        if csv_out is not None:
            typer.echo(f"wrote {csv_out}")


# -- fx -------------------------------------------------------------------------------------------


@fx_app.command("set")
def fx_set(
    day: str = typer.Argument(..., help="YYYY-MM-DD"),
    base: str = typer.Argument(..., help="e.g. USD"),
    quote: str = typer.Argument(..., help="e.g. EUR"),
    rate: str = typer.Argument(..., help="quote units per base unit"),
) -> None:
    """Enter one day's rate (replaces that day's rate for the pair)."""
    with _errors():
        try:
            value = Decimal(rate)
        except InvalidOperation as exc:
            raise fx.FxError(f"rate: {rate!r} is not a number") from exc
        r = fx.set_rate(database(), _day(day, "DAY").date(), base, quote, value)
        typer.echo(f"{r.day} 1 {r.base} = {r.rate} {r.quote} ({r.source})")


@fx_app.command("import")
def fx_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV: date,base,quote,rate")],
) -> None:
    """Import rates from CSV (all or nothing)."""
    with _errors():
        new, replaced = fx.import_rates_csv(database(), file.read_text(encoding="utf-8"), file.name)
        typer.echo(f"imported {new} new rate(s), replaced {replaced}")


@fx_app.command("list")
def fx_list(
    base: str = typer.Option("", help="Only this base."), quote: str = typer.Option("", help="Only this quote.")
) -> None:
    """Stored rates, oldest first."""
    rows = fx.list_rates(database(), base or None, quote or None)
    if not rows:
        typer.echo("no rates: `llm-usage fx import FILE` or `llm-usage fx set DAY BASE QUOTE RATE`")
    for r in rows:
        typer.echo(f"{r.day} 1 {r.base} = {r.rate} {r.quote}  ({r.source})")


@fx_app.command("convert")
def fx_convert(
    amount: str = typer.Argument(...),
    currency: str = typer.Argument(...),
    to: str = typer.Option(..., help="Target currency."),
    day: str = typer.Option("today", help="Day of the amount."),
) -> None:
    """Convert an amount with the stored rates, showing the rate, its day and source."""
    with _errors():
        try:
            value = Decimal(amount)
        except InvalidOperation as exc:
            raise fx.FxError(f"amount: {amount!r} is not a number") from exc
        book = fx.RateBook.load(database())
        c = book.convert(value, currency.upper(), to.upper(), _day(day, "--day").date())
        typer.echo(f"{c.amount:,.2f} {c.currency} {c.note()}".rstrip())


# -- export and anomalies --------------------------------------------------------------------------


def export_command(
    fmt: str = typer.Option("focus", "--format", help=f"One of {', '.join(FORMATS)}."),
    since: str = typer.Option(..., "--since", "--from", help="First day (YYYY-MM-DD, YYYY-MM, 7d, mtd ...)."),
    until: str = typer.Option(..., "--until", "--to", help="Last day, included (YYYY-MM-DD, YYYY-MM ...)."),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: standard output).")
    ] = None,
) -> None:
    """Export usage as FOCUS 1.2 (CSV or Parquet) or as the plain usage rows (CSV)."""
    with _errors():
        start = _day(since, "--since")
        end = day_range(until, now=_now(), argument="--until")[1]
        result = export(database(), fmt, start, end, output)
        if output is not None:
            totals = ", ".join(f"{v:,.2f} {k}" for k, v in sorted(result.totals.items())) or "no cost"
            typer.echo(f"wrote {result.rows:,} rows to {output} ({totals})")


def anomalies_command(
    since: str = typer.Option("30d", "--since", help="First day to check (YYYY-MM-DD, 30d ...)."),
    until: str = typer.Option("yesterday", "--until", help="Last day to check, included."),
    scope: Annotated[list[str] | None, typer.Option(help=_SCOPE_HELP)] = None,
    grain: str = typer.Option("day", help="day, or hour (baseline: the same hours of the last 14 days)."),
    currency: str | None = typer.Option(
        None, metavar="CODE", help="Measure in this currency, day by day (default LLM_USAGE_DISPLAY_CURRENCY)."
    ),
) -> None:
    """List spend anomalies (robust median/MAD on a weekday-seasonal baseline) with their drivers."""
    with _errors():
        settings = get_settings()
        start = _day(since, "--since")
        end = day_range(until, now=_now(), argument="--until")[1]
        if grain not in ("day", "hour"):
            raise AnomalyError(f"--grain: {grain!r} is not day or hour")
        if grain == "hour":  # the current hour is not complete yet
            end = min(end, _now().replace(minute=0, second=0, microsecond=0))
        target = currency_code(currency if currency is not None else settings.display_currency)
        engine, scopes, params = database(), scope or ["all", "provider"], budgets.anomaly_params(settings, grain)
        money = budgets.display_money(target, fx.RateBook.load(engine))
        found = find_anomalies(engine, since=start, until=end, scopes=scopes, params=params, money=money)
        fresh = new_spend(engine, since=start, until=end, scopes=scopes, params=params, money=money)
        if not found:
            typer.echo("no anomalies")
        for a in found:
            typer.echo(a.describe())
        for n in fresh:  # too little history to score: said once, never flagged as an anomaly
            typer.echo(n.describe())
