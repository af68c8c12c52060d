"""One synthetic bill per provider, rendered two ways: as the provider's API answers it, and as its CSV export.

Each bill is a list of line items, the grain of the provider's export (hourly CUR and Google
export lines, daily Azure usage-details rows, OpenRouter and xAI daily rows), made
deterministically from (provider, day, group). The fake APIs (:mod:`tests.fakes.cloud_api`)
aggregate the same items the way each API does (Cost Explorer per day, usage type and linked
account, netting credits; the Query API per day and meter; the BigQuery sync query per day and
SKU, net of credits ...), and the ``*_csv`` functions write them in the export layout the CSV
importers read (the columns of ``tests/fixtures/csv/*.csv``). A test can therefore pull a month
through an API and import the same month from its export and compare the two to the cent, with
neither side computed from the other. Values are synthetic; shapes follow provider-apis.md §3-§7.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

DAY = timedelta(days=1)
AWS_PAYER, AWS_LINKED = "999988887777", ("111122223333", "444455556666")
AZURE_BILLING_ACCOUNT, AZURE_SUBSCRIPTION = "8611537", "3f2e5d1c-0a9b-4c8d-9e7f-6a5b4c3d2e1f"
GCP_ACCOUNT = "0123AB-4567CD-89EF01"
XAI_TEAM = "team-fake-123"
AWS_MARKETPLACE = "Claude Sonnet 4.5 (Amazon Bedrock Edition)"


def _mix(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h >> 11


def _n(day: datetime, *salt: int, modulo: int = 1000) -> int:
    return _mix(int(day.timestamp()) // 3600, *salt) % modulo


def _money(day: datetime, *salt: int) -> Decimal:
    """A cost with up to six decimals (what exports and APIs print)."""
    return Decimal(1 + _n(day, *salt, modulo=5_000_000)).scaleb(-6)


# -- AWS: CUR 2.0 lines (hourly) ----------------------------------------------------------------

AWS_TYPES = (
    ("AmazonBedrock", "Amazon Bedrock", "USE1-Claude4.6Sonnet-input-tokens"),
    ("AmazonBedrock", "Amazon Bedrock", "USE1-Claude4.6Sonnet-output-tokens"),
    ("AmazonBedrock", "Amazon Bedrock", "USE1-Claude4.6Sonnet-cache-read-input-token-count"),
    ("AmazonBedrock", "Amazon Bedrock", "USE1-Nova2.0Lite-input-tokens-flex"),
    ("AWSMarketplace", AWS_MARKETPLACE, "USE1-MP:USE1_InputTokenCount-Units"),
    ("AmazonS3", "Amazon Simple Storage Service", "USE1-TimedStorage-ByteHrs"),
)


@dataclass(frozen=True)
class AwsLine:
    start: datetime
    linked: str
    item_type: str
    product_code: str
    product_name: str
    usage_type: str
    amount: Decimal
    cost: Decimal

    @property
    def service(self) -> str:
        """The service name Cost Explorer's SERVICE dimension shows for the line."""
        return self.product_name


def aws_lines(first: datetime, days: int) -> list[AwsLine]:
    """Two hours a day per usage type and linked account, plus a daily credit on one type."""
    out = []
    for d in range(days):
        day = first + d * DAY
        for hour in (3, 15):
            ts = day + timedelta(hours=hour)
            for a, linked in enumerate(AWS_LINKED):
                for t, (code, product, usage_type) in enumerate(AWS_TYPES):
                    tokens = Decimal(1000 * (1 + _n(ts, a, t, 1, modulo=900)))
                    out.append(AwsLine(ts, linked, "Usage", code, product, usage_type, tokens, _money(ts, a, t, 2)))
        out.append(
            AwsLine(
                day,
                AWS_LINKED[0],
                "Credit",
                "AmazonBedrock",
                "Amazon Bedrock",
                AWS_TYPES[0][2],
                Decimal(0),
                Decimal("-0.10"),
            )
        )
    return out


def aws_cur_csv(lines: list[AwsLine]) -> str:
    """The lines as a CUR 2.0 file (the columns of tests/fixtures/csv/aws_cur.csv)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "bill_payer_account_id", "line_item_usage_account_id", "line_item_line_item_type",
            "line_item_usage_start_date", "line_item_usage_end_date", "line_item_product_code",
            "product_product_name", "line_item_usage_type", "line_item_operation", "line_item_usage_amount",
            "pricing_unit", "line_item_unblended_cost", "line_item_currency_code",
        ]
    )  # fmt: skip
    for x in lines:
        end = x.start + (timedelta(hours=1) if x.item_type == "Usage" else DAY)
        w.writerow(
            [
                AWS_PAYER, x.linked, x.item_type, _iso(x.start), _iso(end), x.product_code, x.product_name,
                x.usage_type, "InvokeModel", x.amount, "tokens" if "Storage" not in x.usage_type else "GB-Mo",
                x.cost, "USD",
            ]
        )  # fmt: skip
    return buf.getvalue()


def ce_results(lines: list[AwsLine], start: datetime, end: datetime, services: set[str], estimated_from: datetime):
    """``ResultsByTime`` as Cost Explorer answers (DAILY, grouped by USAGE_TYPE and LINKED_ACCOUNT)."""
    sums: dict[datetime, dict[tuple[str, str], list[Decimal]]] = defaultdict(
        lambda: defaultdict(lambda: [Decimal(0)] * 2)
    )
    for x in lines:
        day = x.start.replace(hour=0)
        if start <= day < end and x.service in services:
            acc = sums[day][(x.usage_type, x.linked)]
            acc[0] += x.cost
            acc[1] += x.amount
    out = []
    day = start
    while day < end:
        groups = [
            {
                "Keys": [ut, linked],
                "Metrics": {
                    "UnblendedCost": {"Amount": str(cost), "Unit": "USD"},
                    "UsageQuantity": {"Amount": str(qty), "Unit": "N/A"},
                },
            }
            for (ut, linked), (cost, qty) in sorted(sums.get(day, {}).items())
        ]
        out.append(
            {
                "TimePeriod": {"Start": day.strftime("%Y-%m-%d"), "End": (day + DAY).strftime("%Y-%m-%d")},
                "Total": {},
                "Groups": groups,
                "Estimated": day >= estimated_from,
            }
        )
        day += DAY
    return out


# -- Azure: usage details (daily) --------------------------------------------------------------

AZURE_METERS = (
    ("Cognitive Services", "Azure OpenAI", "gpt-4o-0513-Input-glbl"),
    ("Cognitive Services", "Azure OpenAI", "gpt-4o-0513-Output-glbl"),
    ("Cognitive Services", "Azure OpenAI", "gpt 4.1 cached Input glbl Tokens"),
    ("Cognitive Services", "Speech", "S1 Speech to Text"),
    ("Virtual Machines", "Dv3/DSv3 Series", "D2 v3/D2s v3"),
)


@dataclass(frozen=True)
class AzureLine:
    day: datetime
    category: str
    subcategory: str
    meter: str
    quantity: Decimal
    cost: Decimal
    charge: str = "Usage"


def azure_lines(first: datetime, days: int) -> list[AzureLine]:
    out = []
    for d in range(days):
        day = first + d * DAY
        for m, (cat, sub, meter) in enumerate(AZURE_METERS):
            out.append(AzureLine(day, cat, sub, meter, Decimal(1 + _n(day, m, 1)), _money(day, m, 3)))
        if d % 10 == 3:
            out.append(AzureLine(day, *AZURE_METERS[1], Decimal(0), Decimal("-2.5"), "Refund"))
    return out


def azure_csv(lines: list[AzureLine]) -> str:
    """The lines as an EA actual-cost export (tests/fixtures/csv/azure_cost.csv's columns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "BillingAccountId", "SubscriptionId", "Date", "MeterCategory", "MeterSubCategory", "MeterName",
            "Quantity", "UnitOfMeasure", "CostInBillingCurrency", "BillingCurrency", "ResourceId",
            "ConsumedService", "ChargeType",
        ]
    )  # fmt: skip
    for x in lines:
        rid = (
            f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/ai/providers/Microsoft.CognitiveServices/accounts/oai"
        )
        w.writerow(
            [
                AZURE_BILLING_ACCOUNT, AZURE_SUBSCRIPTION, x.day.strftime("%m/%d/%Y"), x.category, x.subcategory,
                x.meter, x.quantity, "1K", x.cost, "EUR", rid,
                "microsoft.cognitiveservices" if x.category == "Cognitive Services" else "microsoft.compute", x.charge,
            ]
        )  # fmt: skip
    return buf.getvalue()


def azure_rows(lines: list[AzureLine], start: datetime, end: datetime, services: set[str]) -> list[list]:
    """Query API rows (PreTaxCost, UsageQuantity, UsageDate, MeterSubcategory, Meter, Currency)."""
    sums: dict[tuple[datetime, str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 2)
    for x in lines:
        if start <= x.day < end and x.category in services:
            acc = sums[(x.day, x.subcategory, x.meter)]
            acc[0] += x.cost
            acc[1] += x.quantity
    return [
        [cost, qty, int(day.strftime("%Y%m%d")), sub, meter, "EUR"]
        for (day, sub, meter), (cost, qty) in sorted(sums.items())
    ]


# -- Google: billing export (hourly) --------------------------------------------------------------

GCP_SKUS = (
    ("Vertex AI", "A1B2-C3D4-E5F6", "Gemini 2.5 Pro Input Tokens", "count", "regular"),
    ("Vertex AI", "A1B2-C3D4-E5F7", "Gemini 2.5 Pro Output Tokens", "count", "regular"),
    (
        "Generative Language API",
        "B1B2-C3D4-E5F6",
        "Generative Language API - Gemini 2.0 Flash - Input tokens",
        "count",
        "regular",
    ),
    ("Vertex AI", "", "Tax", "", "tax"),
    ("Compute Engine", "CCCC-DDDD-EEEE", "N2 Instance Core running in Americas", "seconds", "regular"),
)


@dataclass(frozen=True)
class GcpLine:
    start: datetime
    project: str
    service: str
    sku_id: str
    sku: str
    unit: str
    cost_type: str
    amount: Decimal
    cost: Decimal
    credits: tuple[Decimal, ...] = field(default=())


def gcp_lines(first: datetime, days: int) -> list[GcpLine]:
    out = []
    for d in range(days):
        day = first + d * DAY
        for hour in (1, 13):
            ts = day + timedelta(hours=hour)
            for p, project in enumerate(("ml-research", "support-bot")):
                for s, (service, sku_id, sku, unit, cost_type) in enumerate(GCP_SKUS):
                    amount = Decimal(1000 * (1 + _n(ts, p, s, 1))) if unit else Decimal(0)
                    credits = (-_money(ts, p, s, 9).scaleb(-1),) if s == 0 else ()
                    out.append(
                        GcpLine(
                            ts, project, service, sku_id, sku, unit, cost_type, amount, _money(ts, p, s, 4), credits
                        )
                    )
    return out


def gcp_csv(lines: list[GcpLine]) -> str:
    """The lines as the standard export saved as CSV (tests/fixtures/csv/gcp_billing.csv's columns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "billing_account_id", "service.description", "sku.id", "sku.description", "usage_start_time",
            "usage_end_time", "project.id", "cost", "currency", "usage.amount", "usage.unit", "credits", "cost_type",
        ]
    )  # fmt: skip
    for x in lines:
        credits = json.dumps([{"name": "Promo", "amount": float(c), "type": "PROMOTION"} for c in x.credits])
        w.writerow(
            [
                GCP_ACCOUNT, x.service, x.sku_id, x.sku, x.start.strftime("%Y-%m-%d %H:%M:%S UTC"),
                (x.start + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC"), x.project, x.cost, "USD",
                x.amount if x.unit else "", x.unit, credits, x.cost_type,
            ]
        )  # fmt: skip
    return buf.getvalue()


def gcp_rows(lines: list[GcpLine], start: datetime, end: datetime, services: set[str]) -> list[dict]:
    """What the sync query returns: per day, project, service, SKU, unit, cost type (net of credits apart)."""
    sums: dict[tuple, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for x in lines:
        if start <= x.start < end and x.service in services:
            key = (x.start.strftime("%Y-%m-%d"), x.project, x.service, x.sku_id, x.sku, x.unit, x.cost_type, "USD")
            acc = sums[key]
            acc[0] += x.cost
            acc[1] += sum(x.credits, Decimal(0))
            acc[2] += x.amount
    names = ("day", "project_id", "service", "sku_id", "sku", "unit", "cost_type", "currency")
    return [
        {
            "billing_account_id": GCP_ACCOUNT,
            **dict(zip(names, key, strict=True)),
            "cost": c,
            "credits": cr,
            "usage_amount": a,
        }
        for key, (c, cr, a) in sorted(sums.items())
    ]


# -- OpenRouter and xAI: daily rows; their exports are the generic template ----------------------

OPENROUTER_MODELS = (("openai/gpt-4.1", "OpenAI"), ("anthropic/claude-sonnet-4", "Anthropic"), ("x-ai/grok-4", "xAI"))
XAI_DESCRIPTIONS = ("Chat grok-4-0709", "Chat grok-3-mini", "Image grok-2-image-1212")


def openrouter_items(first: datetime, days: int) -> list[dict]:
    out = []
    for d in range(days):
        day = first + d * DAY
        for m, (model, upstream) in enumerate(OPENROUTER_MODELS):
            prompt = 100 + _n(day, m, 1, modulo=90_000)
            completion = 10 + _n(day, m, 2, modulo=9000)
            out.append(
                {
                    "date": day.strftime("%Y-%m-%d"),
                    "model": model,
                    "model_permaslug": f"{model}-2025-01-01",
                    "endpoint_id": f"00000000-0000-0000-0000-00000000000{m}",
                    "provider_name": upstream,
                    "usage": _money(day, m, 3),
                    "byok_usage_inference": Decimal("0.01") if m == 2 else Decimal(0),
                    "requests": 1 + _n(day, m, 4, modulo=90),
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "reasoning_tokens": completion // 4,
                }
            )
    return out


def xai_points(first: datetime, days: int) -> dict[str, list[tuple[datetime, Decimal]]]:
    return {
        desc: [(first + d * DAY, _money(first + d * DAY, i, 5)) for d in range(days)]
        for i, desc in enumerate(XAI_DESCRIPTIONS)
    }


def generic_csv(rows: list[dict]) -> str:
    """Rows in the generic template (date, provider, model, account, ..., cost, currency, line_item)."""
    buf = io.StringIO()
    cols = ["date", "provider", "model", "account", "project", "input_tokens", "output_tokens", "reasoning_tokens",
            "requests", "cost", "currency", "line_item"]  # fmt: skip
    w = csv.DictWriter(buf, cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    return buf.getvalue()


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Bills:
    """Every provider's bill over ``[first, first + days)``."""

    first: datetime
    days: int
    aws: list[AwsLine] = field(init=False)
    azure: list[AzureLine] = field(init=False)
    gcp: list[GcpLine] = field(init=False)
    openrouter: list[dict] = field(init=False)
    xai: dict[str, list[tuple[datetime, Decimal]]] = field(init=False)

    def __post_init__(self) -> None:
        self.aws = aws_lines(self.first, self.days)
        self.azure = azure_lines(self.first, self.days)
        self.gcp = gcp_lines(self.first, self.days)
        self.openrouter = openrouter_items(self.first, self.days)
        self.xai = xai_points(self.first, self.days)

    def openrouter_csv(self, account: str) -> str:
        return generic_csv(
            [
                {
                    **r,
                    "provider": "openrouter",
                    "account": account,
                    "input_tokens": r["prompt_tokens"],
                    "output_tokens": r["completion_tokens"],
                    "cost": r["usage"],
                    "currency": "USD",
                    "line_item": r["provider_name"],
                }
                for r in self.openrouter
            ]
        )

    def xai_csv(self) -> str:
        rows = []
        for desc, points in self.xai.items():
            rows += [
                {
                    "date": d.strftime("%Y-%m-%d"),
                    "provider": "xai",
                    "account": XAI_TEAM,
                    "cost": v,
                    "currency": "USD",
                    "line_item": desc,
                }
                for d, v in points
            ]
        return generic_csv(rows)
