"""``llm-usage billing``: which billed source counts when several bill one provider account-day.

``overlaps`` lists the account-days two or more billed sources bill and which one counts;
``prefer`` makes one source count for a provider account whatever the default precedence says;
``clear`` goes back to the default (cost API, native export, FOCUS, generic: design rule 5).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import typer

from collector.cli.common import database
from collector.core.windows import DateError, day_range
from collector.query.billing import (
    BillingSource,
    clear_preference,
    overlaps,
    preferences,
    read_coverage,
    set_preference,
)

billing_app = typer.Typer(help="Which billed source counts when several bill the same account and day.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@billing_app.command("overlaps")
def overlaps_command(
    since: str = typer.Option("90d", "--since", metavar="DATE", help="First day: YYYY-MM-DD, YYYY-MM, 30d ..."),
) -> None:
    """Account-days billed by more than one source, which one counts and what each says."""
    now = datetime.now(UTC)
    try:
        start = day_range(since, now=now, argument="--since")[0]
    except DateError as exc:
        raise _fail(str(exc)) from None
    found = overlaps(read_coverage(database(), start, now + timedelta(days=1)))
    if not found:
        typer.echo(f"no account-day since {start:%Y-%m-%d} is billed by more than one source")
    for o in found:
        typer.echo(o.describe())


@billing_app.command("prefer")
def prefer_command(
    provider: str = typer.Argument(..., help="Provider id, e.g. aws_bedrock."),
    account: str = typer.Argument(..., help="Billing account as stored (see `llm-usage report --by account`)."),
    source: str = typer.Argument(..., metavar="SOURCE:KIND", help="e.g. csv:aws_cur, csv:focus, api:costs."),
) -> None:
    """Make one billed source count for a provider account on every day it bills."""
    try:
        chosen = BillingSource.parse(source)
    except ValueError as exc:
        raise _fail(f"SOURCE: {exc}") from None
    try:
        who = getpass.getuser()
    except (OSError, KeyError):
        who = ""
    set_preference(database(), provider, account, chosen, who=who)
    typer.echo(f"{provider} account {account}: {chosen.label} counts where it bills a day")


@billing_app.command("clear")
def clear_command(
    provider: str = typer.Argument(...),
    account: str = typer.Argument(...),
) -> None:
    """Back to the default precedence for a provider account."""
    if not clear_preference(database(), provider, account):
        raise _fail(f"no preference is set for {provider} account {account}")
    typer.echo(f"{provider} account {account}: the default precedence applies again")


@billing_app.command("preferences")
def preferences_command() -> None:
    """The explicit preferences set with ``prefer``."""
    prefs = preferences(database())
    if not prefs:
        typer.echo("no preferences: the default precedence applies (cost API, native export, FOCUS, generic)")
    for (provider, account), src in sorted(prefs.items()):
        typer.echo(f"{provider} account {account}: {src.label}")
