"""The demo database: history that ends at the current hour, with what makes the product different.

``llm-usage demo`` rebuilds ``data/demo.db`` from scratch on every run, so a newcomer's ``report
--since 7d``, month to date, forecast and anomalies always have data. Besides the generator's
hourly usage (:mod:`collector.demo.synthetic`, every account labelled ``demo``) it writes, through
the product's own code paths:

* a **bill beside the estimate** for OpenAI and Anthropic: daily cost rows (``api:costs`` /
  ``api:cost_report``) that differ from usage x price the way real bills do (priority-tier and
  image lines, a credit), so the Reconciliation page has a gap to explain;
* **proxy traffic** for part of another OpenAI project's calls (real ``proxy_events``, rolled up by the
  proxy's own rollup), so the Proxy page and the proxy-vs-provider comparison have data;
* **one real anomaly**: yesterday, the busiest API project spent about six times a usual day;
* a **budget near its threshold** (this month's spend at ~85 % of the amount) and a team budget;
* a **chargeback rule set** mapping projects to teams and cost centres.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from collector.core.ingest import ingest_records, priced
from collector.core.schema import UsageRecord
from collector.core.windows import HOUR, floor, floor_day
from collector.demo.synthetic import GeneratorConfig, generate
from collector.finance import budgets, chargeback
from collector.proxy.recorder import insert_events, new_event_id
from collector.proxy.rollup import rollup
from collector.query.report import Filters, report

ACCOUNT = "demo"
#: How the demo bill differs from usage x price: (line item, share of the day's estimate).
BILL_LINES = {
    "openai": (("tokens, default tier", Decimal("0.92")), ("tokens, priority tier", Decimal("0.16"))),
    "anthropic": (("tokens", Decimal("0.97")),),
}
COST_KIND = {"openai": "costs", "anthropic": "cost_report"}


@dataclass
class DemoSummary:
    """What the demo wrote."""

    usage_rows: int = 0
    bill_rows: int = 0
    proxy_events: int = 0
    budgets: int = 0
    end: datetime | None = None


def build_demo(engine: Engine, *, now: datetime, days: int = 120, rows_per_hour: int = 40) -> DemoSummary:
    """Write the demo dataset ending at ``now``'s hour into an empty, migrated database."""
    end = floor(now, HOUR)
    cfg = GeneratorConfig(days=days, rows_per_hour=rows_per_hour, end=end)
    summary = DemoSummary(end=end)
    usage = list(generate(cfg))
    spike, proxied = _busiest_projects(usage)
    usage += list(_spike(usage, spike, end))
    summary.usage_rows = ingest_records(engine, usage).records
    bill = list(_bill(usage, end))
    summary.bill_rows = ingest_records(engine, bill).records
    summary.proxy_events = _proxy_traffic(engine, usage, proxied)
    summary.budgets = _budgets(engine, end)
    chargeback.save_rules(engine, _rules(), created_by="demo")
    return summary


def _busiest_projects(usage: list[UsageRecord]) -> tuple[str, str]:
    """The API project with the most usage rows (the anomaly's) and OpenAI's next busiest (the proxy's)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for rec in usage:
        if rec.source == "api" and rec.project:
            counts[(rec.provider, rec.project)] += 1
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    spike = ranked[0][1]
    proxied = next((p for provider, p in ranked if provider == "openai" and p != spike), spike)
    return spike, proxied


def _spike(usage: list[UsageRecord], project: str, end: datetime) -> Iterator[UsageRecord]:
    """Yesterday ``project`` cost about six times a usual day of the same weekday: one real anomaly.

    Every call of the day is repeated under other keys (a leaked key, a runaway batch job), so the
    spike stands out on a quiet weekend day as much as on a busy Monday.
    """
    yesterday = floor_day(end) - timedelta(days=1)
    for rec in usage:
        if rec.project != project or rec.source != "api" or rec.basis != "estimated":
            continue
        if yesterday <= rec.bucket_start < yesterday + timedelta(days=1):
            for n in range(5):  # five more of the same calls under other keys
                yield priced(
                    replace(
                        rec,
                        api_key_id=f"{rec.api_key_id}-burst{n}",
                        cost=None,
                        basis="unpriced",
                        currency="",
                        price_version="",
                    )
                )


def _bill(usage: list[UsageRecord], end: datetime) -> Iterator[UsageRecord]:
    """Daily cost rows of OpenAI and Anthropic: the estimate reshaped the way real bills differ."""
    daily: dict[tuple[str, datetime, str], Decimal] = defaultdict(Decimal)
    for rec in usage:
        if rec.provider in BILL_LINES and rec.basis == "estimated" and rec.cost is not None:
            daily[(rec.provider, floor_day(rec.bucket_start), rec.project)] += rec.cost
    today = floor_day(end)
    rng = random.Random(7)  # noqa: S311  (seeded on purpose: the same demo bill every run)
    days = set()
    for (provider, day, project), estimate in sorted(daily.items()):
        if day >= today:  # the provider has not billed today yet (a lag a real cost API has)
            continue
        days.add((provider, day))
        for line, share in BILL_LINES[provider]:  # by project and line item, as OpenAI's /costs groups
            yield _bill_row(provider, day, line, (estimate * share).quantize(Decimal("0.000001")), project)
    for provider, day in sorted(days):
        if provider == "openai":
            yield _bill_row(provider, day, "images, dall-e-3", Decimal(rng.randint(150, 900)) / 100)
            if day.day == 1:
                yield _bill_row(provider, day, "credit", Decimal("-25"))


def _bill_row(provider: str, day: datetime, line: str, cost: Decimal, project: str = "") -> UsageRecord:
    return UsageRecord(
        provider=provider,
        account=ACCOUNT,
        source="api",
        kind=COST_KIND[provider],
        bucket_start=day,
        bucket_end=day + timedelta(days=1),
        project=project,
        line_item=line,
        cost=cost,
        currency="USD",
        basis="billed",
        source_ref="demo",
    )


def _proxy_traffic(engine: Engine, usage: list[UsageRecord], project: str) -> int:
    """Proxy events for part of one project's OpenAI calls, rolled up by the proxy's own rollup."""
    rng = random.Random(11)  # noqa: S311
    events = []
    for rec in usage:
        if rec.provider != "openai" or rec.project != project or not rec.requests:
            continue
        calls = max(1, rec.requests * 2 // 3)
        per_call_in, per_call_out = rec.input_tokens // rec.requests, rec.output_tokens // rec.requests
        for _ in range(min(calls, 6)):  # a sample of calls per hour keeps the demo quick
            events.append(_event(rec, project, per_call_in, per_call_out, rng))
    inserted = insert_events(engine, events)
    rollup(engine)
    return inserted


def _event(rec: UsageRecord, project: str, inp: int, out: int, rng: random.Random) -> dict[str, object]:
    at = rec.bucket_start + timedelta(seconds=rng.randint(0, 3599))
    failed = rng.random() < 0.02
    return {
        "id": new_event_id(),
        "ts": at.timestamp(),
        "provider": "openai",
        "upstream": "openai",
        "endpoint": "chat.completions",
        "method": "POST",
        "model": rec.model_raw,
        "status": 429 if failed else 200,
        "stream": rng.random() < 0.5,
        "partial": False,
        "usage_known": not failed,
        "error": "",
        "input_tokens": 0 if failed else inp,
        "cache_read_tokens": 0,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 0 if failed else out,
        "reasoning_tokens": 0,
        "latency_ms": round(rng.uniform(300, 4000), 1),
        "ttfb_ms": round(rng.uniform(80, 600), 1),
        "team": "support",
        "project": project,
        "token_id": 1,
        "api_key_fp": "fp_demo_support_bot",
        "service_tier": "default",
        "response_id": "",
    }


def _budgets(engine: Engine, end: datetime) -> int:
    """A monthly budget this month's spend has used ~85 % of, and a team budget."""
    month_start = floor_day(end).replace(day=1)
    spent = sum(
        (s.cost or Decimal(0) for (cur, _), s in report(engine, Filters(month_start, end + HOUR)).totals().items()
         if cur == "USD"),
        Decimal(0),
    )  # fmt: skip
    amount = max(Decimal(100), (spent / Decimal("0.85")).quantize(Decimal(1)))
    budgets.create_budget(engine, name="All LLM spend (demo)", scope="all", amount=str(amount))
    budgets.create_budget(engine, name="Support team (demo)", scope="team", scope_value="support", amount="2500")
    return 2


def _rules() -> list[chargeback.Rule]:
    """Projects to teams and cost centres; the playground stays unallocated on purpose."""
    mapping = {
        "proj_search": ("search", "CC-110"),
        "proj_support-bot": ("support", "CC-220"),
        "proj_code-review": ("platform", "CC-100"),
        "proj_marketing": ("growth", "CC-300"),
        "proj_ml-research": ("research", "CC-400"),
    }
    rules = [chargeback.Rule("project", p, team, cc) for p, (team, cc) in mapping.items()]
    rules.append(chargeback.Rule("project", "proj_data-*", "platform", "CC-100", note="every data project"))
    return rules


__all__ = ["ACCOUNT", "DemoSummary", "build_demo"]
