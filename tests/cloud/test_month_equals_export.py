"""A month pulled through each API equals, to the cent, the same month imported from its CSV export.

The fakes and the exports are rendered from one synthetic bill (tests/fakes/cloud_bills.py):
hourly CUR and Google export lines, daily Azure usage details, daily OpenRouter and xAI rows.
The API side aggregates them the way each API does; the CSV side goes through the importers. Then
both are in one database, and the billed-source precedence counts the month once (the API) and
reports the overlap. OpenRouter serves only the last 30 completed days (provider-apis.md §7.1),
so its "month" is those 30 days; the others use the previous calendar month.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from collector.core.store import USAGE
from collector.query.billing import BillingSource, overlaps, read_coverage
from collector.sync.connections import add_connection
from collector.sync.engine import sync_connection
from collector.sync.vault import load_vault
from importers.service import import_file
from tests.cloud.helpers import connection
from tests.fakes.cloud_bills import aws_cur_csv, azure_csv, gcp_csv
from tests.sync.sync_helpers import make_settings

CASES = {
    # provider: (window kind, importer, the account both file the month under)
    "aws_bedrock": ("last month", "aws_cur", "999988887777"),
    "azure_openai": ("last month", "azure_cost", "8611537"),
    "google": ("last month", "gcp_billing", "0123AB-4567CD-89EF01"),
    "xai": ("last month", "generic", "team-fake-123"),
    "openrouter": ("last 30 days", "generic", "openrouter"),
}


def _window(kind: str) -> tuple[datetime, datetime]:
    """The window as of now: computed when the test runs, not when the module is imported.

    The fake API and the provider module take "today" at request time; a window taken at import
    would be a day behind theirs for every test that runs after midnight UTC in a long suite.
    """
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "last 30 days":
        return today - timedelta(days=30), today
    first = today.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1), first


def _export(cloud, provider: str, window) -> bytes:
    bills = cloud.api.bills
    start, end = window
    if provider == "aws_bedrock":
        return aws_cur_csv([x for x in bills.aws if start <= x.start < end]).encode()
    if provider == "azure_openai":
        return azure_csv([x for x in bills.azure if start <= x.day < end]).encode()
    if provider == "google":
        return gcp_csv([x for x in bills.gcp if start <= x.start < end]).encode()
    text_ = bills.xai_csv() if provider == "xai" else bills.openrouter_csv("openrouter")
    header, *rows = text_.splitlines()
    keep = [r for r in rows if start.strftime("%Y-%m-%d") <= r[:10] < end.strftime("%Y-%m-%d")]
    return "\n".join([header, *keep, ""]).encode()


def _money(engine, source: str, window) -> dict[tuple[str, str, str], Decimal]:
    """Billed money per (provider, account, currency) of one source over the window."""
    u = USAGE.c
    stmt = select(u.provider, u.account, u.currency, u.cost).where(
        u.source == source, u.basis == "billed", u.bucket_start >= window[0], u.bucket_start < window[1]
    )
    out: dict[tuple[str, str, str], Decimal] = {}
    with engine.connect() as db:
        for p, a, c, cost in db.execute(stmt):
            out[(p, a, c)] = out.get((p, a, c), Decimal(0)) + cost
    return out


@pytest.mark.parametrize("provider", list(CASES))
def test_a_month_through_the_api_equals_its_export_and_counts_once(provider, engine, tmp_path, cloud):
    kind, importer, account = CASES[provider]
    window = _window(kind)
    settings = make_settings(tmp_path)
    spec = connection(provider, cloud.url, cloud.authority_url)
    conn = add_connection(engine, settings, load_vault(settings), provider=provider, label="openrouter", **spec)
    summary = sync_connection(engine, settings, conn.id, since=window[0], until=window[1])
    assert summary.ok, summary.error
    api = _money(engine, "api", window)
    assert api and all(a == account for _, a, _ in api), api

    data = _export(cloud, provider, window)
    result = import_file(io.BytesIO(data), importer=importer, name=f"{provider}.csv", engine=engine, settings=settings)
    assert result.records > 0, result.message
    csv = _money(engine, "csv", window)
    assert csv == api  # to the cent (and below): same providers, accounts, currencies and sums

    coverage = read_coverage(engine, *window, providers=tuple({p for p, _, _ in api}), accounts=(account,))
    days = (window[1] - window[0]).days
    assert len(coverage) >= days  # every day of the window is billed
    counted = {bill.counted for bill in coverage.values()}
    assert counted == {BillingSource("api", summary.endpoints[0].endpoint)}  # the API counts; the export is kept
    once = sum(
        (sum(bill.money[bill.counted].values(), Decimal(0)) for bill in coverage.values() if bill.counted), Decimal(0)
    )
    assert once == sum(api.values())  # counted once, not twice
    assert overlaps(coverage)  # and the overlap is reported
