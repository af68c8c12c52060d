"""Seeded synthetic usage: hourly buckets for ~40 real models, for benchmarks and the demo.

The shape is plausible rather than real: office-hours peaks on weekdays, quiet weekends, a few
heavy projects and many light ones, provider-specific token mixes (Anthropic cache writes,
OpenAI cached input, reasoning models' reasoning tokens). The same seed always yields the same
records, so benchmark runs compare like with like. Everything is labelled ``demo`` in
``account`` so it can never be mistaken for real spend.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from collector.core.ingest import ingest_records, priced
from collector.core.schema import UsageRecord
from collector.core.store import UpsertResult

#: (provider, model, source, kind) for the generator: real model names from the price table.
MODELS: tuple[tuple[str, str, str, str], ...] = (
    ("openai", "gpt-4o", "api", "completions"),
    ("openai", "gpt-4o-mini", "api", "completions"),
    ("openai", "gpt-4.1", "api", "completions"),
    ("openai", "gpt-4.1-mini", "api", "completions"),
    ("openai", "gpt-4.1-nano", "api", "completions"),
    ("openai", "o3", "api", "completions"),
    ("openai", "o3-mini", "api", "completions"),
    ("openai", "o4-mini", "api", "completions"),
    ("openai", "gpt-5", "api", "completions"),
    ("openai", "gpt-5-mini", "api", "completions"),
    ("openai", "gpt-5-nano", "api", "completions"),
    ("openai", "text-embedding-3-small", "api", "embeddings"),
    ("openai", "text-embedding-3-large", "api", "embeddings"),
    ("anthropic", "claude-sonnet-4-5-20250929", "api", "messages"),
    ("anthropic", "claude-opus-4-1-20250805", "api", "messages"),
    ("anthropic", "claude-haiku-4-5-20251001", "api", "messages"),
    ("anthropic", "claude-sonnet-4-20250514", "api", "messages"),
    ("anthropic", "claude-opus-4-20250514", "api", "messages"),
    ("anthropic", "claude-3-7-sonnet-20250219", "api", "messages"),
    ("anthropic", "claude-3-5-haiku-20241022", "api", "messages"),
    ("google", "gemini-2.5-pro", "csv", "gcp_billing"),
    ("google", "gemini-2.5-flash", "csv", "gcp_billing"),
    ("google", "gemini-2.5-flash-lite", "csv", "gcp_billing"),
    ("google", "gemini-2.0-flash", "csv", "gcp_billing"),
    ("aws_bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "csv", "aws_cur"),
    ("aws_bedrock", "amazon.nova-pro-v1:0", "csv", "aws_cur"),
    ("aws_bedrock", "amazon.nova-lite-v1:0", "csv", "aws_cur"),
    ("aws_bedrock", "meta.llama3-1-70b-instruct-v1:0", "csv", "aws_cur"),
    ("azure_openai", "gpt-4o", "csv", "azure_cost"),
    ("azure_openai", "gpt-4o-mini", "csv", "azure_cost"),
    ("mistral", "mistral-large-latest", "csv", "generic"),
    ("mistral", "mistral-small-latest", "csv", "generic"),
    ("mistral", "codestral-latest", "csv", "generic"),
    ("xai", "grok-4", "csv", "generic"),
    ("xai", "grok-3-mini", "csv", "generic"),
    ("groq", "llama-3.3-70b-versatile", "csv", "generic"),
    ("groq", "llama-3.1-8b-instant", "csv", "generic"),
    ("deepseek", "deepseek-chat", "csv", "generic"),
    ("deepseek", "deepseek-reasoner", "csv", "generic"),
    ("fireworks", "accounts/fireworks/models/llama-v3p1-70b-instruct", "csv", "fireworks"),
)
PROJECTS = tuple(
    f"proj_{n}"
    for n in (
        "search",
        "support-bot",
        "code-review",
        "marketing",
        "data-eng",
        "legal-review",
        "sales-assist",
        "analytics",
        "onboarding",
        "translation",
        "ml-research",
        "billing-ops",
        "qa-automation",
        "docs",
        "mobile-app",
        "security",
        "hr-helpdesk",
        "forecasting",
        "ingest",
        "playground",
    )
)
TEAMS = ("platform", "growth", "support", "research", "finance")
#: Mean of :func:`_activity` over a week, so ``rows_per_hour`` is the average density.
MEAN_ACTIVITY = 0.4818
REASONING_MODELS = frozenset({"o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "deepseek-reasoner"})


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate: the end (exclusive) and length of the period, and its density."""

    days: int = 365
    rows_per_hour: int = 115
    seed: int = 42
    end: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    keys_per_project: int = 3

    @property
    def start(self) -> datetime:
        """First hour generated."""
        return self.end - timedelta(days=self.days)


@dataclass(frozen=True)
class _Group:
    provider: str
    model: str
    source: str
    kind: str
    project: str
    api_key_id: str
    team: str
    weight: float


def _groups(cfg: GeneratorConfig, rng: random.Random) -> list[_Group]:
    """Enough (model, project, key) combinations that ``rows_per_hour`` can be active at once."""
    want = max(cfg.rows_per_hour * 2, len(MODELS))
    out: list[_Group] = []
    seen: set[tuple[str, str, str]] = set()
    capacity = len(MODELS) * len(PROJECTS) * cfg.keys_per_project
    while len(out) < min(want, capacity):
        provider, model, source, kind = MODELS[len(out) % len(MODELS)]
        project = PROJECTS[int(rng.paretovariate(1.2)) % len(PROJECTS)]
        key = f"key_{project.removeprefix('proj_')}_{rng.randrange(cfg.keys_per_project)}"
        if (provider + model, project, key) in seen:
            continue
        seen.add((provider + model, project, key))
        team = TEAMS[PROJECTS.index(project) % len(TEAMS)]
        out.append(_Group(provider, model, source, kind, project, key, team, rng.paretovariate(1.5)))
    return out


def _activity(ts: datetime) -> float:
    """Relative traffic at this hour: weekday office hours high, nights and weekends low."""
    hour = ts.hour
    daily = 0.35 + 0.65 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.3
    return daily * (0.45 if ts.weekday() >= 5 else 1.0)


def _record(g: _Group, ts: datetime, rng: random.Random, scale: float) -> UsageRecord:
    requests = max(1, int(rng.expovariate(1 / (40 * g.weight * scale))))
    per_req_in = rng.randint(300, 6000)
    input_tokens = requests * per_req_in
    output_tokens = 0 if g.kind == "embeddings" else requests * rng.randint(50, 900)
    cache_read = cw5 = cw1h = reasoning = 0
    if g.provider == "anthropic":
        cache_read = int(input_tokens * rng.uniform(0.0, 0.6))
        cw5 = int((input_tokens - cache_read) * rng.uniform(0.0, 0.2))
        cw1h = int((input_tokens - cache_read - cw5) * rng.uniform(0.0, 0.05))
    elif g.provider in ("openai", "azure_openai") and g.kind != "embeddings":
        cache_read = int(input_tokens * rng.uniform(0.0, 0.5))
    if g.model in REASONING_MODELS:
        reasoning = int(output_tokens * rng.uniform(0.2, 0.7))
    rec = UsageRecord(
        provider=g.provider,
        source=g.source,
        kind=g.kind,
        bucket_start=ts,
        bucket_end=ts + timedelta(hours=1),
        account="demo",
        project=g.project,
        api_key_id=g.api_key_id,
        model=g.model,
        team=g.team,
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        cache_write_5m_tokens=cw5,
        cache_write_1h_tokens=cw1h,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        requests=requests,
        source_ref="synthetic",
    )
    rec = priced(rec)
    if g.source == "csv" and rec.cost is not None:
        # Billing exports state what was charged: near the list price, not exactly it.
        billed = (rec.cost * Decimal(str(round(rng.uniform(0.97, 1.0), 4)))).quantize(Decimal("0.0000000001"))
        rec = replace(rec, cost=billed, basis="billed", price_version="")
    return rec


def generate(cfg: GeneratorConfig, limit: int | None = None) -> Iterator[UsageRecord]:
    """Yield synthetic hourly records in time order; at most ``limit`` when given."""
    rng = random.Random(cfg.seed)  # noqa: S311  (seeded on purpose: reproducible data)
    groups = _groups(cfg, rng)
    produced = 0
    ts = cfg.start
    while ts < cfg.end:
        act = _activity(ts)
        active = max(1, round(cfg.rows_per_hour * act / MEAN_ACTIVITY))
        for g in rng.sample(groups, min(active, len(groups))):
            yield _record(g, ts, rng, act)
            produced += 1
            if limit is not None and produced >= limit:
                return
        ts += timedelta(hours=1)


def rows_per_hour_for(total_rows: int, days: int = 365) -> int:
    """The density that makes ``days`` of data come to about ``total_rows``."""
    return max(1, round(total_rows / (days * 24)))


def generate_demo(engine: Engine, cfg: GeneratorConfig) -> UpsertResult:
    """Write a demo dataset (idempotent: the same seed upserts the same keys)."""
    return ingest_records(engine, generate(cfg))
