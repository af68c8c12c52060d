"""Cloud billing parsers on their documented (or fixture-derived) answers, and their unconfirmed corners.

AWS goes through boto3 with botocore's own Stubber, which checks each request against the
Cost Explorer service model (tests/fixtures/aws_bedrock/SOURCES.md says where each answer comes from).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from botocore.stub import Stubber

from collector.core.settings import Settings
from collector.core.windows import Window
from importers.service import import_file
from providers.aws_bedrock import AwsBedrockProvider, parse_cost_and_usage
from providers.google import account_from_table
from providers.xai import parse_usage
from tests.cloud.helpers import connection
from tests.providers.helpers import CTX, FIXTURES, load

#: provider-apis.md §6.1: the real CLI output excerpt, first day kept, verbatim.
CE_DOCUMENTED = {
    "ResultsByTime": [
        {
            "TimePeriod": {"Start": "2026-08-20", "End": "2026-08-21"},
            "Total": {"UnblendedCost": {"Amount": "4.1294931175", "Unit": "USD"}},
            "Groups": [],
            "Estimated": True,
        }
    ]
}


def _grouped(day: str, groups: list[tuple[str, str, str, str]]) -> dict:
    return {
        "GroupDefinitions": [
            {"Type": "DIMENSION", "Key": "USAGE_TYPE"},
            {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"},
        ],
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": day, "End": "2026-09-05"},
                "Total": {},
                "Groups": [
                    {
                        "Keys": [ut, linked],
                        "Metrics": {
                            "UnblendedCost": {"Amount": cost, "Unit": "USD"},
                            "UsageQuantity": {"Amount": qty, "Unit": "N/A"},
                        },
                    }
                    for ut, linked, cost, qty in groups
                ],
                "Estimated": False,
            }
        ],
    }


def _aws(tmp_path) -> AwsBedrockProvider:
    spec = connection("aws_bedrock", "https://ce.us-east-1.amazonaws.com")
    settings = Settings(data_dir=tmp_path)
    return AwsBedrockProvider.connect(settings, spec["key"], options={"account": "999988887777"})  # type: ignore[return-value]


def test_cost_explorer_documented_answer_through_boto3(tmp_path):
    api = _aws(tmp_path)
    client = api._client()
    window = Window(datetime(2026, 8, 20, tzinfo=UTC), datetime(2026, 8, 21, tzinfo=UTC))
    with Stubber(client) as stub:
        stub.add_response("get_cost_and_usage", CE_DOCUMENTED)
        pages = list(api.pages(api.endpoints[0], window))
    assert len(pages) == 1
    assert pages[0].through == window.start  # an Estimated day is read again by the next sync
    assert parse_cost_and_usage(pages[0].payload, CTX) == []  # ungrouped: no rows, and nothing invented


def test_cost_explorer_pull_of_the_cur_fixture_equals_importing_it(tmp_path, sqlite_engine):
    """The Bedrock lines of tests/fixtures/csv/aws_cur.csv, as Cost Explorer sums them per day."""
    api = _aws(tmp_path)
    client = api._client()
    answer = _grouped(
        "2026-09-04",
        [
            ("USE1-Claude4.6Sonnet-input-tokens", "111122223333", "0.26", "120000"),  # 0.36 usage - 0.10 credit
            ("USE1-Claude4.6Sonnet-output-tokens", "111122223333", "0.12", "8000"),
            ("USE1-Claude4.6Sonnet-cache-read-input-token-count", "111122223333", "0.015", "50000"),
            ("USE1-Claude4.6Sonnet-cache-write-input-token-count", "111122223333", "0.0375", "10000"),
            ("USE1-MP:USE1_InputTokenCount-Units", "111122223333", "0.006", "2000"),
        ],
    )
    window = Window(datetime(2026, 9, 4, tzinfo=UTC), datetime(2026, 9, 5, tzinfo=UTC))
    with Stubber(client) as stub:
        stub.add_response("get_cost_and_usage", answer)
        (page,) = api.pages(api.endpoints[0], window)
    records = parse_cost_and_usage(page.payload, CTX)
    by_type = {r.line_item: r for r in records}
    cache_read = by_type["USE1-Claude4.6Sonnet-cache-read-input-token-count"]
    assert (cache_read.input_tokens, cache_read.cache_read_tokens, cache_read.model) == (
        50000,
        50000,
        "Claude4.6Sonnet",
    )
    assert by_type["USE1-MP:USE1_InputTokenCount-Units"].model == ""  # Marketplace: billing name only in CUR
    assert all(r.project == "111122223333" and r.basis == "billed" for r in records)
    result = import_file(FIXTURES / "csv" / "aws_cur.csv", engine=sqlite_engine, settings=Settings(data_dir=tmp_path))
    imported = sum((t.cost[("billed", "USD")] for (p, _), t in result.totals.items() if p == "aws_bedrock"), Decimal(0))
    assert sum(r.cost for r in records) == imported == Decimal("0.4385")


def test_cost_explorer_pages_follow_next_page_token(tmp_path):
    api = _aws(tmp_path)
    client = api._client()
    first = {
        **_grouped("2026-09-04", [("USE1-NovaPro-output-tokens", "111122223333", "1.5", "3000")]),
        "NextPageToken": "t2",
    }
    second = _grouped("2026-09-04", [("USE1-NovaPro-input-tokens", "111122223333", "0.5", "9000")])
    window = Window(datetime(2026, 9, 4, tzinfo=UTC), datetime(2026, 9, 5, tzinfo=UTC))
    with Stubber(client) as stub:
        stub.add_response("get_cost_and_usage", first)
        stub.add_response("get_cost_and_usage", second, {"NextPageToken": "t2", **_expected(api, window)})
        pages = list(api.pages(api.endpoints[0], window))
    assert [p.through for p in pages] == [window.start, window.end]  # page 1 may continue on page 2


def _expected(api: AwsBedrockProvider, window: Window) -> dict:
    return {
        "TimePeriod": {"Start": "2026-09-04", "End": "2026-09-05"},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost", "UsageQuantity"],
        "Filter": api._filter(),
        "GroupBy": [{"Type": "DIMENSION", "Key": "USAGE_TYPE"}, {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}],
    }


def test_xai_documented_usage_is_usd_not_cents():
    records = parse_usage(load("xai", "usage_documented"), CTX)
    assert [(r.cost, r.line_item, r.model, r.bucket_start.isoformat()) for r in records] == [
        (Decimal("0.75973725"), "Chat grok-test-v1", "grok-test-v1", "2026-09-20T00:00:00+00:00")
    ]


def test_xai_rows_without_token_values():
    """Token metrics are [UNCONFIRMED] (provider-apis.md §4.1): none are asked, rows carry money only.

    Missing ``limitReached``, ``groupLabels`` and empty ``values`` are handled too, and a response
    without ``timeSeries`` is a range without usage.
    """
    payload = {
        "timeSeries": [
            {"group": ["Chat grok-4-0709"], "dataPoints": [{"timestamp": "2026-09-21T00:00:00Z", "values": ["1.5"]}]},
            {"group": ["Chat grok-3"], "dataPoints": [{"timestamp": "2026-09-21T00:00:00Z", "values": []}]},
        ]
    }
    (rec,) = parse_usage(payload, CTX)
    assert (rec.cost, rec.input_tokens, rec.output_tokens, rec.line_item) == (Decimal("1.5"), 0, 0, "Chat grok-4-0709")
    assert parse_usage({}, CTX) == []


def test_google_account_comes_from_the_export_table_name():
    assert account_from_table("p.d.gcp_billing_export_v1_0123AB_4567CD_89EF01") == "0123AB-4567CD-89EF01"
    assert account_from_table("p.d.gcp_billing_export_resource_v1_0123AB_4567CD_89EF01") == "0123AB-4567CD-89EF01"
    assert account_from_table("p.d.my_view") == ""


def test_google_query_fixture_equals_importing_the_csv_fixture(tmp_path, sqlite_engine):
    from providers.google import parse_billing

    raw = load("google", "query_constructed")
    names = [f["name"] for f in raw["schema"]["fields"]]
    rows = [
        {
            n: Decimal(c["v"]) if n in ("cost", "credits", "usage_amount") else c["v"]
            for n, c in zip(names, r["f"], strict=True)
        }
        for r in raw["rows"]
    ]
    records = parse_billing({"rows": rows}, CTX)
    result = import_file(
        FIXTURES / "csv" / "gcp_billing.csv", engine=sqlite_engine, settings=Settings(data_dir=tmp_path)
    )
    imported = sum((t.cost[("billed", "USD")] for (p, _), t in result.totals.items() if p == "google"), Decimal(0))
    assert sum(r.cost for r in records) == imported == Decimal("13.45")
    assert sum(r.input_tokens for r in records) == 4_400_000
