"""One number per provider account and day when several billed sources bill it (design rule 5).

Each case imports (or syncs) two real sources of the same charges through the product's own paths
(CSV files through ``importers.service.import_file``; the OpenAI costs API through a real sync
against the fake admin API on 127.0.0.1) and checks, on SQLite and PostgreSQL:

* the billed total of the overlapping day equals the higher-precedence source's, to the cent;
* the overlap is said: in the import summary (and its dry run), in ``status``, in the report;
* an explicit preference makes the other source count, and clearing it goes back;
* removing the higher-precedence source's rows (an import, or a connection with its data) lets
  the other source count again.

The CSV files are built here in each format's documented columns (the same ones as the fixtures
under ``tests/fixtures/csv/``, which cite provider-apis.md), with amounts that differ between the
two sources of a pair so the test can see which one counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector.app import app
from collector.core.settings import Settings, get_settings
from collector.query.billing import BillingSource, clear_preference, set_preference
from collector.query.health import status
from collector.query.report import Filters, report
from collector.sync.connections import add_connection
from collector.sync.engine import sync_connection
from collector.sync.vault import load_vault
from importers.log import remove_import
from importers.service import import_file
from tests.sync.sync_helpers import OPENAI_KEY, make_settings

D = Decimal
DAY = datetime(2026, 10, 3, tzinfo=UTC)
WINDOW = Filters(DAY, DAY + timedelta(days=1))
PAYER = "111122223333"
GCP_ACCOUNT = "0123AB-4567CD-89EF01"
AZURE_ACCOUNT = "8611537"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cur(tmp_path: Path, *costs: str) -> Path:
    """An AWS CUR 2.0 file: one Bedrock line per cost, an hour each, on :data:`DAY` (§6.2)."""
    head = (
        "bill_payer_account_id,line_item_usage_account_id,line_item_line_item_type,line_item_usage_start_date,"
        "line_item_usage_end_date,line_item_product_code,product_product_name,line_item_usage_type,"
        "line_item_usage_amount,pricing_unit,line_item_unblended_cost,line_item_currency_code\n"
    )
    lines = [
        f"{PAYER},444455556666,Usage,{DAY + timedelta(hours=h):%Y-%m-%dT%H:%M:%SZ},"
        f"{DAY + timedelta(hours=h + 1):%Y-%m-%dT%H:%M:%SZ},AmazonBedrock,Amazon Bedrock,"
        f"USE1-Claude4.6Sonnet-input-tokens,{1000 * (h + 1)},tokens,{cost},USD\n"
        for h, cost in enumerate(costs)
    ]
    return _write(tmp_path, "cur.csv", head + "".join(lines))


def focus(tmp_path: Path, provider: str, service: str, account: str, *costs: str, name: str = "focus.csv") -> Path:
    """A FOCUS 1.2 file of one provider's AI service, one hourly charge per cost (§9.2)."""
    head = (
        "BilledCost,BillingAccountId,BillingCurrency,ChargeCategory,ChargeDescription,ChargePeriodStart,"
        "ChargePeriodEnd,ConsumedQuantity,ConsumedUnit,ProviderName,ServiceCategory,ServiceName,SkuId,SkuMeter\n"
    )
    lines = [
        f"{cost},{account},USD,Usage,model input tokens,{DAY + timedelta(hours=h):%Y-%m-%dT%H:%M:%SZ},"
        f"{DAY + timedelta(hours=h + 1):%Y-%m-%dT%H:%M:%SZ},{1000 * (h + 1)},Tokens,{provider},"
        f"AI and Machine Learning,{service},SKU-{h},input tokens\n"
        for h, cost in enumerate(costs)
    ]
    return _write(tmp_path, name, head + "".join(lines))


def gcp(tmp_path: Path, *costs: str) -> Path:
    """A Cloud Billing export of Vertex AI lines (§3.2)."""
    head = (
        "billing_account_id,service.description,sku.id,sku.description,usage_start_time,usage_end_time,"
        "project.id,cost,currency,usage.amount,usage.unit\n"
    )
    lines = [
        f"{GCP_ACCOUNT},Vertex AI,SKU-{h},Gemini 2.5 Pro Input Tokens,"
        f"{DAY + timedelta(hours=h):%Y-%m-%d %H:%M:%S} UTC,{DAY + timedelta(hours=h + 1):%Y-%m-%d %H:%M:%S} UTC,"
        f"ml,{cost},USD,{1000 * (h + 1)},count\n"
        for h, cost in enumerate(costs)
    ]
    return _write(tmp_path, "gcp.csv", head + "".join(lines))


def azure(tmp_path: Path, *costs: str) -> Path:
    """An Azure actual-cost export of Azure OpenAI meters (§5.3), one meter per cost."""
    head = (
        "BillingAccountId,SubscriptionId,Date,MeterCategory,MeterSubCategory,MeterName,Quantity,"
        "UnitOfMeasure,CostInBillingCurrency,BillingCurrency,ChargeType\n"
    )
    lines = [
        f"{AZURE_ACCOUNT},sub-ai-1,{DAY:%m/%d/%Y},Cognitive Services,Azure OpenAI,gpt-4o-0513-Input-glbl-{h},"
        f"{h + 1},1K,{cost},USD,Usage\n"
        for h, cost in enumerate(costs)
    ]
    return _write(tmp_path, "azure.csv", head + "".join(lines))


def generic(tmp_path: Path, provider: str, account: str, *costs: str) -> Path:
    """The documented generic template, one model row per cost."""
    head = "date,provider,model,account,input_tokens,output_tokens,cost,currency\n"
    row = "{day:%Y-%m-%d},{provider},model-{h},{account},{tokens},10,{cost},USD\n"
    lines = [
        row.format(day=DAY, provider=provider, h=h, account=account, tokens=1000 * (h + 1), cost=c)
        for h, c in enumerate(costs)
    ]
    return _write(tmp_path, "generic.csv", head + "".join(lines))


def billed_total(engine, provider: str) -> Decimal:
    sums = report(engine, Filters(DAY, DAY + timedelta(days=1), providers=(provider,))).totals()
    return sums[("USD", "billed")].cost


def imported(engine, path: Path):
    result = import_file(path, engine=engine, settings=Settings(), who="test")
    assert result.status == "imported", result.summary()
    return result


#: (provider, higher-precedence file, its total, lower-precedence file, its total)
CASES = {
    "cur+focus": ("aws_bedrock", lambda t: cur(t, "10.00", "21.25"), "31.25",
                  lambda t: focus(t, "AWS", "Amazon Bedrock", PAYER, "10.25", "21.25"), "31.50"),
    "gcp+focus": ("google", lambda t: gcp(t, "4.25", "1.00"), "5.25",
                  lambda t: focus(t, "Google Cloud", "Vertex AI", GCP_ACCOUNT, "4.30", "1.00"), "5.30"),
    "azure+focus": ("azure_openai", lambda t: azure(t, "6.25", "15.00"), "21.25",
                    lambda t: focus(t, "Microsoft", "Azure OpenAI Service", AZURE_ACCOUNT, "6.00", "15.00"), "21.00"),
    "focus+generic": ("aws_bedrock", lambda t: focus(t, "AWS", "Amazon Bedrock", PAYER, "7.00"), "7.00",
                      lambda t: generic(t, "aws_bedrock", PAYER, "6.50", "1.00"), "7.50"),
    "cur+generic": ("aws_bedrock", lambda t: cur(t, "3.10"), "3.10",
                    lambda t: generic(t, "aws_bedrock", PAYER, "3.00"), "3.00"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("lower_first", [True, False], ids=["lower-first", "higher-first"])
def test_the_higher_precedence_source_counts_and_the_overlap_is_said(engine, tmp_path, case, lower_first):
    provider, make_high, high_total, make_low, low_total = CASES[case]
    high_dir, low_dir = tmp_path / "high", tmp_path / "low"
    high_dir.mkdir()
    low_dir.mkdir()
    high_path, low_path = make_high(high_dir), make_low(low_dir)
    first, second = (low_path, high_path) if lower_first else (high_path, low_path)
    imported(engine, first)
    dry = import_file(second, dry_run=True, engine=engine, settings=Settings())
    assert dry.status == "dry_run" and len(dry.overlaps) == 1  # said before anything is written
    result = imported(engine, second)
    (overlap,) = result.overlaps
    high_src = BillingSource("csv", _kind(high_path))
    assert overlap.counted == high_src and dry.overlaps[0].counted == high_src
    assert any(line.startswith("  overlap: ") and "counts" in line for line in result.summary())
    assert billed_total(engine, provider) == D(high_total)  # never high + low
    rep = report(engine, WINDOW)
    assert rep.overlaps and any(n.startswith("billed twice: ") for n in rep.notes)
    assert status(engine).billing_overlaps  # status says it too
    # An admin prefers the other source: it counts instead; clearing goes back.
    low_src = BillingSource("csv", _kind(low_path))
    set_preference(engine, provider, overlap.account, low_src)
    assert billed_total(engine, provider) == D(low_total)
    assert clear_preference(engine, provider, overlap.account)
    assert billed_total(engine, provider) == D(high_total)
    # Removing the higher-precedence file lets the other one count again.
    high_id = result.import_id if second == high_path else _import_id(engine, high_path)
    assert remove_import(engine, high_id)
    assert billed_total(engine, provider) == D(low_total)
    assert not report(engine, WINDOW).overlaps


def _kind(path: Path) -> str:
    return {"cur.csv": "aws_cur", "focus.csv": "focus", "gcp.csv": "gcp_billing", "azure.csv": "azure_cost"}.get(
        path.name, "generic"
    )


def _import_id(engine, path: Path) -> int:
    from importers.log import recent_imports

    return next(r["id"] for r in recent_imports(engine) if r["name"] == path.name and r["status"] == "imported")


def test_the_cost_api_counts_over_an_export_of_the_same_account(engine, tmp_path, fake_api, monkeypatch):
    """API cost + CSV: a real sync of OpenAI ``/costs`` and a generic file billing the same org-days."""
    settings = make_settings(tmp_path, backfill_days=3)
    vault = load_vault(settings)
    conn = add_connection(engine, settings, vault, provider="openai", label="prod", key=OPENAI_KEY,
                          base_url=fake_api.base_url)  # fmt: skip
    assert conn.id is not None
    summary = sync_connection(engine, settings, conn.id, vault=vault, endpoints={"costs"})
    assert summary.ok and summary.rows > 0 and summary.overlaps == []
    day = _a_billed_day(engine)
    window = Filters(day, day + timedelta(days=1), providers=("openai",))
    api_total = report(engine, window).totals()[("USD", "billed")].cost
    account = report(engine, window, by=("account",)).rows[0].dims["account"]
    head = "date,provider,model,account,input_tokens,output_tokens,cost,currency\n"
    path = _write(tmp_path, "openai.csv", head + f"{day:%Y-%m-%d},openai,gpt-4o,{account},1000,10,999.99,USD\n")
    result = imported(engine, path)
    assert result.overlaps and result.overlaps[0].counted == BillingSource("api", "costs")
    assert report(engine, window).totals()[("USD", "billed")].cost == api_total  # not + 999.99
    again = sync_connection(engine, settings, conn.id, vault=vault, endpoints={"costs"})
    assert again.ok and again.overlaps and again.overlaps[0].counted == BillingSource("api", "costs")
    # Removing the connection with the data it collected lets the file count.
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    out = CliRunner().invoke(app, ["connections", "remove", str(conn.id), "--yes", "--delete-data"])
    assert out.exit_code == 0, out.output
    assert report(engine, window).totals()[("USD", "billed")].cost == D("999.99")


def _a_billed_day(engine) -> datetime:
    rows = report(engine, Filters(DAY - timedelta(days=400), datetime.now(UTC) + timedelta(days=1)), grain="day").rows
    return min(r.period for r in rows if r.basis == "billed" and r.cost)


def test_the_same_source_twice_is_not_an_overlap_and_adds_nothing(engine, tmp_path):
    """A newer export of the same charges updates rows through their keys; nothing is said or added."""
    imported(engine, cur(tmp_path, "10.00", "21.25"))
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    newer = cur(again_dir, "10.00", "21.25")
    _write(again_dir, "cur.csv", newer.read_text() + "\n")  # other bytes, same rows
    result = imported(engine, again_dir / "cur.csv")
    assert result.overlaps == [] and result.unchanged == result.records
    assert billed_total(engine, "aws_bedrock") == D("31.25")
