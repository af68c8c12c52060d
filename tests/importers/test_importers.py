"""Each importer against its fixture (built from the documented column layouts), on SQLite and PostgreSQL."""

import gzip
import io
import shutil
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from importers import REGISTRY, detect
from importers.base import CsvFile
from importers.service import import_file
from tests.importers.conftest import FIXTURES, usage_rows

EXPECTED_FORMAT = {
    "focus_ai.csv": "focus",
    "gcp_billing.csv": "gcp_billing",
    "aws_cur.csv": "aws_cur",
    "azure_cost.csv": "azure_cost",
    "fireworks.csv": "fireworks",
    "generic.csv": "generic",
}


@pytest.mark.parametrize(("name", "importer"), sorted(EXPECTED_FORMAT.items()))
def test_each_fixture_is_detected_as_its_format(name, importer):
    with (FIXTURES / name).open("rb") as fp:
        assert detect(CsvFile(fp, name).header).name == importer


def test_registry_has_one_importer_per_format_with_a_title():
    assert list(REGISTRY) == ["focus", "gcp_billing", "aws_cur", "azure_cost", "fireworks", "generic"]
    for name, cls in REGISTRY.items():
        assert cls.name == name and cls.title
        assert set(cls.required) <= set(cls.columns)


def by_line_item(rows):
    return {r["line_item"]: r for r in rows}


def test_focus_rows(engine):
    result = import_file(FIXTURES / "focus_ai.csv", engine=engine, who="t")
    assert result.ok, result.summary()
    assert (result.rows_read, result.records, result.skipped) == (7, 6, 1)
    rows = by_line_item(usage_rows(engine))
    gemini_in = rows["SKU-GEM20F-IN | Generative Language API - Gemini 2.0 Flash - Input tokens"]
    assert gemini_in["provider"] == "google" and gemini_in["model"] == "gemini-2.0-flash"
    assert gemini_in["input_tokens"] == 15_000_000  # 15000 x "1000 Tokens"
    assert gemini_in["cost"] == Decimal("1.5") and gemini_in["basis"] == "billed"
    assert gemini_in["account"] == "ba-100" and gemini_in["project"] == "proj-search"
    assert gemini_in["team"] == "search-team"
    assert gemini_in["source"] == "csv" and gemini_in["kind"] == "focus"
    assert gemini_in["source_ref"] == f"file:{result.import_id}"
    assert gemini_in["bucket_start"] == datetime(2026, 9, 2, 10, tzinfo=UTC)
    credit = rows["SKU-GEM20F-IN | Generative Language API - Gemini 2.0 Flash - Input tokens | Credit"]
    assert credit["cost"] == Decimal("-0.5") and credit["input_tokens"] == 0
    refund = rows["USE1-Claude4.6Sonnet-input-tokens | USE1-Claude4.6Sonnet-input-tokens | Adjustment | Correction"]
    assert refund["cost"] == Decimal("-1")
    bedrock = rows["USE1-Claude4.6Sonnet-input-tokens | USE1-Claude4.6Sonnet-input-tokens"]
    assert (bedrock["provider"], bedrock["model"], bedrock["input_tokens"]) == (
        "aws_bedrock",
        "claude-sonnet-4-6",  # one model, one name: the price table's id ...
        750_000,
    )
    assert bedrock["model_raw"] == "Claude4.6Sonnet"  # ... and the CUR billing name beside it
    assert '"effective_cost": "2.0000000000"' in bedrock["details"]
    azure = rows["meter-gpt4o-out | gpt-4o-0513-Output-glbl"]
    assert (azure["provider"], azure["currency"], azure["output_tokens"]) == ("azure_openai", "EUR", 310_000)
    totals = result.totals
    assert totals[("google", "gemini-2.0-flash")].cost == {("billed", "USD"): Decimal("1.8")}
    assert totals[("azure_openai", "gpt-4o-0513")].cost == {("billed", "EUR"): Decimal("3.1")}


def test_focus_keep_all_and_account_label(sqlite_engine):
    result = import_file(FIXTURES / "focus_ai.csv", engine=sqlite_engine, keep_all=True, account="finance-label")
    assert (result.records, result.skipped) == (7, 0)
    rows = usage_rows(sqlite_engine)
    assert {r["account"] for r in rows} == {"finance-label"}
    ec2 = [r for r in rows if r["provider"] == "aws"]
    assert ec2 and ec2[0]["quantity"] == Decimal(24) and ec2[0]["quantity_unit"] == "hours"


def test_gcp_billing_rows(engine):
    result = import_file(FIXTURES / "gcp_billing.csv", engine=engine)
    assert result.ok, result.summary()
    rows = usage_rows(engine, provider="google")
    assert len(rows) == 4
    pro_in = next(r for r in rows if r["line_item"].endswith("Gemini 2.5 Pro Input Tokens"))
    assert pro_in["cost"] == Decimal("3")  # 4.25 + credits -1.25
    assert (pro_in["model"], pro_in["input_tokens"], pro_in["team"]) == ("gemini-2.5-pro", 3_400_000, "research")
    assert pro_in["account"] == "0123AB-4567CD-89EF01" and pro_in["project"] == "ml-research"
    flash = next(r for r in rows if r["project"] == "support-bot")
    assert (flash["model"], flash["input_tokens"]) == ("gemini-2.0-flash", 1_000_000)
    tax = next(r for r in rows if r["line_item"].endswith("| tax"))
    assert tax["cost"] == Decimal("0.35") and tax["input_tokens"] == 0


def test_aws_cur_rows_and_gz(engine, tmp_path):
    gz = tmp_path / "aws_cur.csv.gz"
    with (FIXTURES / "aws_cur.csv").open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    result = import_file(gz, engine=engine)
    assert result.ok and result.importer == "aws_cur", result.summary()
    rows = usage_rows(engine)
    assert len(rows) == 6 and result.skipped == 1
    by_type = {r["line_item"]: r for r in rows}
    read = by_type["USE1-Claude4.6Sonnet-cache-read-input-token-count | InvokeModel"]
    assert (read["input_tokens"], read["cache_read_tokens"]) == (50_000, 50_000)
    write = by_type["USE1-Claude4.6Sonnet-cache-write-input-token-count | InvokeModel"]
    assert (write["input_tokens"], write["cache_write_5m_tokens"]) == (10_000, 10_000)
    out = by_type["USE1-Claude4.6Sonnet-output-tokens | InvokeModel"]
    assert out["output_tokens"] == 8000 and out["cost"] == Decimal("0.12")
    assert out["user_id"] == "arn:aws:iam::111122223333:role/app"
    assert (out["account"], out["project"]) == ("999988887777", "111122223333")
    market = by_type["USE1-MP:USE1_InputTokenCount-Units | Usage"]
    assert (market["model"], market["input_tokens"]) == ("Claude Sonnet 4.5", 2000)
    credit = by_type["USE1-Claude4.6Sonnet-input-tokens | InvokeModel | Credit"]
    assert credit["cost"] == Decimal("-0.1") and credit["input_tokens"] == 0


def test_azure_cost_bom_semicolons_decimal_commas(engine):
    result = import_file(FIXTURES / "azure_cost.csv", engine=engine)
    assert result.ok, result.summary()
    rows = usage_rows(engine)
    assert len(rows) == 4
    assert {r["currency"] for r in rows} == {"EUR"}
    assert {r["bucket_start"] for r in rows} == {datetime(2026, 9, 5, tzinfo=UTC)}
    inp = next(r for r in rows if r["line_item"] == "Azure OpenAI | gpt-4o-0513-Input-glbl")
    assert (inp["input_tokens"], inp["cost"], inp["model"]) == (1_250_500, Decimal("6.25"), "gpt-4o-0513")
    assert inp["team"] == "platform" and inp["account"] == "8611537" and inp["project"] == "sub-ai-1"
    out = next(r for r in rows if r["line_item"] == "Azure OpenAI | gpt-4o-0513-Output-glbl")
    assert out["cost"] == Decimal("1500") and out["output_tokens"] == 100_000
    refund = next(r for r in rows if r["line_item"].endswith("| Refund"))
    assert refund["cost"] == Decimal("-2.5")
    cached = next(r for r in rows if "cached" in r["line_item"])
    assert (cached["input_tokens"], cached["cache_read_tokens"], cached["model"]) == (40_000, 40_000, "gpt-4.1")


def test_fireworks_point_rows_sum_into_hours_and_are_never_zero_priced(engine):
    result = import_file(FIXTURES / "fireworks.csv", engine=engine)
    assert result.ok, result.summary()
    rows = usage_rows(engine)
    assert len(rows) == 2
    llama = next(r for r in rows if "llama" in r["model"])
    assert (llama["input_tokens"], llama["output_tokens"]) == (2000, 500)
    assert llama["bucket_start"] == datetime(2025, 10, 20, 17, tzinfo=UTC)
    assert llama["bucket_end"] == datetime(2025, 10, 20, 18, tzinfo=UTC)
    assert llama["user_id"] == "dev@example.com"
    for row in rows:
        # not in the bundled price table: unpriced, never $0
        assert row["basis"] in ("estimated", "unpriced")
        assert row["cost"] is None if row["basis"] == "unpriced" else row["cost"] > 0


def test_generic_template_rows(engine):
    result = import_file(FIXTURES / "generic.csv", engine=engine)
    assert result.ok, result.summary()
    rows = {r["provider"]: r for r in usage_rows(engine)}
    xai = rows["xai"]
    assert (xai["input_tokens"], xai["cache_read_tokens"], xai["reasoning_tokens"]) == (1_200_000, 200_000, 50_000)
    assert (xai["cost"], xai["currency"], xai["basis"]) == (Decimal("4.35"), "USD", "billed")
    assert xai["bucket_start"] == datetime(2026, 9, 6, tzinfo=UTC)
    assert xai["bucket_end"] == datetime(2026, 9, 7, tzinfo=UTC)
    assert (rows["mistral"]["cost"], rows["mistral"]["currency"]) == (Decimal("1.1"), "EUR")
    groq = rows["groq"]
    assert groq["basis"] == "estimated" and groq["cost"] > 0 and groq["price_version"].startswith("genai-prices")
    assert groq["team"] == "platform" and groq["api_key_id"] == "key-c"


def test_generic_template_file_is_a_valid_generic_header():
    template = FIXTURES.parents[2] / "importers" / "templates" / "generic.csv"
    with template.open("rb") as fp:
        assert detect(CsvFile(fp, "generic.csv").header).name == "generic"


def test_focus_row_ending_before_it_starts_names_the_column(sqlite_engine, tmp_path):
    text = (FIXTURES / "focus_ai.csv").read_text()
    bad = tmp_path / "focus_bad.csv"
    bad.write_text(
        text.replace("2026-09-02T10:00:00Z,2026-09-02T11:00:00Z", "2026-09-02T10:00:00Z,2026-09-02T09:00:00Z", 1)
    )
    result = import_file(bad, engine=sqlite_engine)
    assert not result.ok
    (issue,) = result.issues
    assert (issue.line, issue.column, issue.value) == (5, "ChargePeriodEnd", "2026-09-02T09:00:00Z")
    assert "half-open" in issue.rule


def test_focus_request_units_and_negative_token_quantities(sqlite_engine):
    header = "BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ServiceName,ServiceCategory,ProviderName,"
    header += "SkuId,SkuMeter,ConsumedQuantity,ConsumedUnit\n"
    common = "2026-09-01T00:00:00Z,2026-09-02T00:00:00Z,Vertex AI,AI and Machine Learning,Google Cloud"
    data = (
        header
        + f"0.40,USD,{common},S1,Grounding with Google Search requests,1000,Requests\n"
        + f"-0.10,USD,{common},S2,Gemini 2.0 Flash Input tokens,-5,1000 Tokens\n"
    ).encode()
    result = import_file(io.BytesIO(data), name="focus-small.csv", engine=sqlite_engine)
    assert result.ok, result.summary()
    rows = {r["line_item"]: r for r in usage_rows(sqlite_engine)}
    grounding = rows["S1 | Grounding with Google Search requests"]
    assert (grounding["requests"], grounding["quantity"]) == (1000, Decimal(0))
    reversal = rows["S2 | Gemini 2.0 Flash Input tokens"]
    assert reversal["input_tokens"] == 0
    assert (reversal["quantity"], reversal["quantity_unit"], reversal["cost"]) == (
        Decimal(-5000),
        "tokens",
        Decimal("-0.1"),
    )
