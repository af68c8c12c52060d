"""A realistic month for the fake admin API: usage, and a bill consistent with documented prices.

October 2026 of one OpenAI organisation and one Anthropic organisation, hour by hour:

* OpenAI: completions at the default tier, at ``priority``, at ``flex`` and in batch, two
  fine-tuned models, a model no price table knows; embeddings, (free) moderations, DALL-E images
  in two sizes, speech (tts-1, tts-1-hd), transcription (whisper-1), vector storage, code
  interpreter sessions, file and web search calls. Its ``/costs`` bill has one line per day,
  project and line item, each the documented price x the usage, rounded to the cent, plus a
  credit, a discount, tax and a fine-tuning training charge; the last day is not billed yet.
* Anthropic: messages at standard, batch and Priority Tier, both context windows, web searches,
  a model no price table knows; a cost report built from the same usage (Priority Tier left out,
  as provider-apis.md §2.8.4 says it is), code execution charges the usage report never shows,
  and a Claude Code report whose tokens are part of the messages.

Prices here are typed from the providers' pricing pages independently of the product's
``collector/core/prices.json``. :class:`Truth` keeps, per provider, what every reconciliation
figure must be, computed from the ledger alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
#: The cost API has not billed this day yet: its usage stands alone.
UNBILLED_DAY = datetime(2026, 10, 31, tzinfo=UTC)
OPENAI_ORG = "org-fake"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
M = Decimal(1_000_000)
GIB = 2**30
CENT = Decimal("0.01")

# -- documented prices (USD per million tokens unless said otherwise) --------------------------------
# https://platform.openai.com/docs/pricing (standard, batch, flex, fine-tuning, tools),
# https://openai.com/api-priority-processing/ : (input, cached input, output)
OPENAI_TOKENS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("gpt-4o-mini-2024-07-18", "standard"): ("0.15", "0.075", "0.60"),
    ("gpt-4o-2024-08-06", "standard"): ("2.50", "1.25", "10.00"),
    ("gpt-4o-2024-08-06", "priority"): ("4.25", "2.125", "17.00"),
    ("gpt-4.1-2025-04-14", "standard"): ("2.00", "0.50", "8.00"),
    ("gpt-4.1-2025-04-14", "priority"): ("3.50", "0.875", "14.00"),
    ("gpt-4.1-2025-04-14", "batch"): ("1.00", "0.50", "4.00"),
    ("o4-mini-2025-04-16", "standard"): ("1.10", "0.275", "4.40"),
    ("o4-mini-2025-04-16", "flex"): ("0.55", "0.138", "2.20"),
    ("text-embedding-3-small", "standard"): ("0.02", "0.02", "0"),
    ("omni-moderation-latest", "standard"): ("0", "0", "0"),
    # Fine-tuned inference at the base model's fine-tuned rate.
    ("ft:gpt-4o-mini-2024-07-18:acme::A1b2C3", "standard"): ("0.30", "0.15", "1.20"),
    ("ft:gpt-4.1-2025-04-14:acme:support:X9y8Z7", "standard"): ("3.00", "0.75", "12.00"),
}
#: genai-prices' standard rates for the same models (what "tokens at standard rates" means):
#: fine-tuned gpt-4o-mini is there without a cached rate, ft:gpt-4.1 and moderation not at all.
OPENAI_STANDARD: dict[str, tuple[str, str, str]] = {
    "gpt-4o-mini-2024-07-18": ("0.15", "0.075", "0.60"),
    "gpt-4o-2024-08-06": ("2.50", "1.25", "10.00"),
    "gpt-4.1-2025-04-14": ("2.00", "0.50", "8.00"),
    "o4-mini-2025-04-16": ("1.10", "0.275", "4.40"),
    "text-embedding-3-small": ("0.02", "0.02", "0"),
    "ft:gpt-4o-mini-2024-07-18:acme::A1b2C3": ("0.30", "0.30", "1.20"),
}
#: What the unknown model is billed at (no table knows it, so nothing estimates it).
SECRET_OPENAI = ("1.00", "1.00", "4.00")
IMAGE = {("dall-e-3", "1024x1024"): Decimal("0.040"), ("dall-e-3", "1024x1792"): Decimal("0.080")}
TTS = {"tts-1": Decimal(15) / M, "tts-1-hd": Decimal(30) / M}  # per character
WHISPER_PER_SECOND = Decimal("0.006") / 60
WEB_SEARCH_CALL = Decimal(10) / 1000
FILE_SEARCH_CALL = Decimal("2.50") / 1000
SESSION = Decimal("0.03")
STORAGE_GIB_DAY = Decimal("0.10")

# https://docs.anthropic.com/en/docs/about-claude/pricing (+ batch processing, long context):
# (input, output, cache read, 5m write, 1h write)
ANTHROPIC_TOKENS: dict[tuple[str, str], tuple[str, str, str, str, str]] = {
    ("claude-sonnet-4-20250514", "standard"): ("3", "15", "0.30", "3.75", "6"),
    ("claude-sonnet-4-20250514", "batch"): ("1.50", "7.50", "0.15", "1.875", "3"),
    ("claude-sonnet-4-20250514", "long"): ("6", "22.50", "0.60", "7.50", "12"),
    ("claude-sonnet-4-5-20250929", "long"): ("6", "22.50", "0.60", "7.50", "12"),
    ("claude-3-5-haiku-20241022", "standard"): ("0.80", "4", "0.08", "1", "1.6"),
    ("claude-opus-4-1-20250805", "standard"): ("15", "75", "1.50", "18.75", "30"),
}
ANTHROPIC_STANDARD = {
    "claude-sonnet-4-20250514": ANTHROPIC_TOKENS[("claude-sonnet-4-20250514", "standard")],
    "claude-sonnet-4-5-20250929": ("3", "15", "0.30", "3.75", "6"),
    "claude-3-5-haiku-20241022": ANTHROPIC_TOKENS[("claude-3-5-haiku-20241022", "standard")],
    "claude-opus-4-1-20250805": ANTHROPIC_TOKENS[("claude-opus-4-1-20250805", "standard")],
}
SECRET_ANTHROPIC = ("4", "20", "0.40", "5", "8")
ANTHROPIC_WEB_SEARCH = Decimal(10) / 1000
UNKNOWN_OPENAI = "gpt-model-not-in-any-price-table"
UNKNOWN_ANTHROPIC = "claude-internal-preview"


def _mix(*parts: int) -> int:
    """A deterministic hash of integers (no Python hash randomisation)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h >> 11


def _n(hour: int, group: int, salt: int, low: int, high: int) -> int:
    """A count in ``[low, high)`` for one hour, group and field."""
    return low + _mix(2026, hour, group, salt) % (high - low)


def _d(text: str) -> Decimal:
    return Decimal(text)


@dataclass
class Truth:
    """What reconciliation must find for one provider over the month, from the ledger alone."""

    billed: Decimal = Decimal(0)
    estimate: Decimal = Decimal(0)
    standard_tokens: Decimal = Decimal(0)
    line_items: Decimal = Decimal(0)
    unpriced_models: Decimal = Decimal(0)
    bill_only: Decimal = Decimal(0)
    billed_elsewhere: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
    discounts: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    one_sided: Decimal = Decimal(0)

    @property
    def tiers(self) -> Decimal:
        """The estimate less its tokens at standard rates and its line items."""
        return self.estimate - self.standard_tokens - self.line_items


@dataclass
class Month:
    """The generated month: what each endpoint serves, and the truth to compare with."""

    openai_usage: dict[str, dict[int, list[dict]]] = field(default_factory=lambda: defaultdict(dict))
    openai_costs: dict[int, list[dict]] = field(default_factory=dict)
    anthropic_messages: dict[int, list[dict]] = field(default_factory=dict)
    anthropic_costs: dict[int, list[dict]] = field(default_factory=dict)
    claude_code: dict[int, list[dict]] = field(default_factory=dict)
    truth: dict[str, Truth] = field(default_factory=lambda: {"openai": Truth(), "anthropic": Truth()})

    def in_month(self, ts: int) -> bool:
        """True for a bucket start inside the month."""
        return int(START.timestamp()) <= ts < int(END.timestamp())


class _Bill:
    """Bill lines of one provider: exact amounts per (day, project, line), rounded when served."""

    def __init__(self) -> None:
        self.lines: dict[tuple[int, str, str], dict] = {}

    def add(self, day: int, project: str, text: str, amount: Decimal, **extra: object) -> None:
        key = (day, project, text)
        line = self.lines.setdefault(key, {"amount": Decimal(0), **extra})
        line["amount"] += amount


def generate() -> Month:
    """The whole month, deterministic."""
    month = Month()
    _openai(month)
    _anthropic(month)
    return month


# -- OpenAI ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Completion:
    """One completions group: hourly input/output ranges, cached and cache-write shares in %."""

    project: str
    key: str
    model: str
    tier: str
    batch: bool
    inp: tuple[int, int]
    cached_pct: int
    write_pct: int
    out: tuple[int, int]


_COMPLETIONS = (
    _Completion("proj_app", "key_app", "gpt-4o-mini-2024-07-18", "default", False,
                (1_500_000, 2_500_000), 30, 10, (150_000, 350_000)),
    _Completion("proj_app", "key_app", "gpt-4o-2024-08-06", "priority", False, (40_000, 80_000), 20, 0, (3_000, 8_000)),
    _Completion("proj_batch", "key_batch", "gpt-4.1-2025-04-14", "default", True,
                (50_000, 150_000), 0, 0, (10_000, 25_000)),
    _Completion("proj_eval", "key_eval", "o4-mini-2025-04-16", "flex", False,
                (100_000, 200_000), 25, 0, (20_000, 50_000)),
    _Completion("proj_support", "key_ft", "ft:gpt-4o-mini-2024-07-18:acme::A1b2C3", "default", False,
                (150_000, 300_000), 0, 0, (20_000, 40_000)),
    _Completion("proj_support", "key_ft", "ft:gpt-4.1-2025-04-14:acme:support:X9y8Z7", "default", False,
                (20_000, 40_000), 40, 0, (2_000, 5_000)),
    _Completion("proj_lab", "key_lab", UNKNOWN_OPENAI, "default", False, (50_000, 100_000), 0, 0, (10_000, 20_000)),
    _Completion("proj_app", "key_app", "gpt-4.1-2025-04-14", "priority", False,
                (20_000, 40_000), 30, 0, (2_000, 5_000)),
)  # fmt: skip


def _tier_key(tier: str, batch: bool) -> str:
    return "batch" if batch else ("standard" if tier == "default" else tier)


def _prefix(tier: str, batch: bool) -> str:
    key = _tier_key(tier, batch)
    return "" if key == "standard" else f"{key} | "


def _openai(month: Month) -> None:
    truth = month.truth["openai"]
    bill = _Bill()
    hours = int((END - START) / HOUR)
    for h in range(hours):
        ts = int((START + h * HOUR).timestamp())
        day = ts - ts % 86_400
        billed = datetime.fromtimestamp(day, UTC) != UNBILLED_DAY
        est = _OpenAIHour(month, truth, bill, ts, day, h)
        est.completions()
        est.others()
        if not billed:
            truth.one_sided -= est.estimate
    _openai_extra_lines(bill)
    for (day, project, text), line in sorted(bill.lines.items()):
        if datetime.fromtimestamp(day, UTC) == UNBILLED_DAY:
            continue
        amount = line["amount"].quantize(CENT, ROUND_HALF_UP)
        truth.billed += amount
        kind = line.get("cause")
        if kind:
            setattr(truth, kind, getattr(truth, kind) + amount)
        month.openai_costs.setdefault(day, []).append(
            {
                "object": "organization.costs.result",
                "amount": {"value": f"{amount}", "currency": "usd"},
                "line_item": text,
                "project_id": project,
                "organization_id": OPENAI_ORG,
                "quantity": None,
                "quantity_unit": None,
            }
        )


def _openai_extra_lines(bill: _Bill) -> None:
    """Charges with no usage behind them: a training job, a credit, a discount and tax."""
    day = lambda d: int(datetime(2026, 10, d, tzinfo=UTC).timestamp())  # noqa: E731
    bill.add(day(7), "proj_support", "Fine-tuning training, gpt-4.1-2025-04-14", Decimal("42.50"), cause="bill_only")
    bill.add(day(1), "", "Promotional credit applied", Decimal("-50.00"), cause="credits")
    bill.add(day(15), "", "Volume discount", Decimal("-12.34"), cause="discounts")
    bill.add(day(30), "", "Sales tax", Decimal("27.18"), cause="tax")


class _OpenAIHour:
    """One hour of OpenAI usage: the results served and their bill lines and truth."""

    def __init__(self, month: Month, truth: Truth, bill: _Bill, ts: int, day: int, h: int) -> None:
        self.month, self.truth, self.bill, self.ts, self.day, self.h = month, truth, bill, ts, day, h
        self.estimate = Decimal(0)

    def serve(self, kind: str, result: dict) -> None:
        result["object"] = f"organization.usage.{kind}.result"
        self.month.openai_usage[kind].setdefault(self.ts, []).append(result)

    def priced(self, amount: Decimal, *, line_item: bool = False, standard: Decimal | None = None) -> None:
        self.estimate += amount
        self.truth.estimate += amount
        if line_item:
            self.truth.line_items += amount
        if standard is not None:
            self.truth.standard_tokens += standard

    def completions(self) -> None:
        for g, c in enumerate(_COMPLETIONS):
            total = _n(self.h, g, 1, *c.inp)
            cached = total * c.cached_pct // 100
            writes = total * c.write_pct // 100
            output = _n(self.h, g, 2, *c.out)
            result = {
                "project_id": c.project,
                "api_key_id": c.key,
                "user_id": None,
                "model": c.model,
                "batch": c.batch,
                "service_tier": c.tier,
                "input_tokens": total,
                "input_cached_tokens": cached,
                "output_tokens": output,
                "num_model_requests": _n(self.h, g, 3, 20, 200),
            }
            if writes:
                result.update(input_cache_write_tokens=writes, input_uncached_tokens=total - cached - writes)
            self.serve("completions", result)
            self._bill_tokens(c, total - cached, cached, output)

    def _bill_tokens(self, c: _Completion, fresh: int, cached: int, out: int) -> None:
        project, model = c.project, c.model
        prefix = _prefix(c.tier, c.batch)
        rates = OPENAI_TOKENS.get((model, _tier_key(c.tier, c.batch)))
        r = rates or SECRET_OPENAI
        parts = (("input", fresh, r[0]), ("cached input", cached, r[1]), ("output", out, r[2]))
        amount = Decimal(0)
        for direction, n, rate in parts:
            if n:
                cost = n * _d(rate) / M
                amount += cost
                cause = None if rates else "unpriced_models"
                self.bill.add(self.day, project, f"{prefix}{model}, {direction}", cost, cause=cause)
        if rates is None:
            return
        std = OPENAI_STANDARD.get(model)
        standard = (fresh * _d(std[0]) + cached * _d(std[1]) + out * _d(std[2])) / M if std else None
        self.priced(amount, standard=standard)

    def others(self) -> None:
        h = self.h
        for g, model in enumerate(("text-embedding-3-small",)):
            n = _n(h, 10 + g, 1, 500_000, 1_500_000)
            self.serve(
                "embeddings",
                {"project_id": "proj_kb", "api_key_id": "key_kb", "user_id": None, "model": model, "input_tokens": n,
                 "num_model_requests": _n(h, 10 + g, 3, 10, 90)},
            )  # fmt: skip
            cost = n * _d(OPENAI_TOKENS[(model, "standard")][0]) / M
            self.bill.add(self.day, "proj_kb", f"{model}, input", cost)
            self.priced(cost, standard=cost)
        n = _n(h, 11, 1, 10_000, 50_000)
        self.serve(
            "moderations",
            {"project_id": "proj_app", "api_key_id": "key_app", "user_id": None, "model": "omni-moderation-latest",
             "input_tokens": n, "num_model_requests": _n(h, 11, 3, 10, 90)},
        )  # fmt: skip
        self.priced(Decimal(0))  # free, and not on the bill
        self._images()
        self._audio()
        self._storage_and_tools()

    def _images(self) -> None:
        total = Decimal(0)
        for g, ((model, size), price) in enumerate(IMAGE.items()):
            n = _n(self.h, 20 + g, 1, 0, 4)
            self.serve(
                "images",
                {"project_id": "proj_app", "api_key_id": "key_app", "user_id": None, "model": model, "images": n,
                 "num_model_requests": n, "size": size, "source": "image.generation"},
            )  # fmt: skip
            total += n * price
        self.bill.add(self.day, "proj_app", "Image models", total)
        self.priced(total, line_item=True)

    def _audio(self) -> None:
        for g, (model, per_char) in enumerate(TTS.items()):
            chars = _n(self.h, 30 + g, 1, 1_000, 5_000)
            self.serve(
                "audio_speeches",
                {"project_id": "proj_voice", "api_key_id": "key_voice", "user_id": None, "model": model,
                 "characters": chars, "num_model_requests": _n(self.h, 30 + g, 3, 5, 40)},
            )  # fmt: skip
            self.bill.add(self.day, "proj_voice", f"{model}, characters", chars * per_char)
            self.priced(chars * per_char, line_item=True)
        seconds = _n(self.h, 32, 1, 300, 900)
        self.serve(
            "audio_transcriptions",
            {"project_id": "proj_voice", "api_key_id": "key_voice", "user_id": None, "model": "whisper-1",
             "seconds": seconds, "num_model_requests": _n(self.h, 32, 3, 5, 40)},
        )  # fmt: skip
        self.bill.add(self.day, "proj_voice", "whisper-1, audio", seconds * WHISPER_PER_SECOND)
        self.priced(seconds * WHISPER_PER_SECOND, line_item=True)

    def _storage_and_tools(self) -> None:
        h = self.h
        stored = 0
        for g, project in enumerate(("proj_kb", "proj_support")):
            size = _n(h, 40 + g, 1, GIB, 4 * GIB)
            stored += size
            self.serve("vector_stores", {"project_id": project, "usage_bytes": size})
            self.priced(size * STORAGE_GIB_DAY / GIB / 24, line_item=True)
        # The first GiB of the organisation is free: the bill has it, a per-row estimate cannot.
        self.bill.add(self.day, "", "Vector storage", max(stored - GIB, 0) * STORAGE_GIB_DAY / GIB / 24)
        sessions = _n(h, 42, 1, 0, 7)
        self.serve("code_interpreter_sessions", {"project_id": "proj_app", "num_sessions": sessions})
        self.bill.add(self.day, "proj_app", "Code interpreter sessions", sessions * SESSION)
        self.priced(sessions * SESSION, line_item=True)
        calls = _n(h, 43, 1, 10, 60)
        self.serve(
            "file_search_calls",
            {"project_id": "proj_kb", "api_key_id": "key_kb", "user_id": None, "num_requests": calls,
             "vector_store_id": None},
        )  # fmt: skip
        self.bill.add(self.day, "proj_kb", "File search tool calls", calls * FILE_SEARCH_CALL)
        self.priced(calls * FILE_SEARCH_CALL, line_item=True)
        for g, model in enumerate(("gpt-4.1-2025-04-14", "gpt-4o-mini-2024-07-18")):
            calls = _n(h, 44 + g, 1, 2, 12)
            self.serve(
                "web_search_calls",
                {"project_id": "proj_app", "api_key_id": "key_app", "user_id": None, "model": model,
                 "num_requests": calls, "num_model_requests": calls, "context_level": "medium"},
            )  # fmt: skip
            self.bill.add(self.day, "proj_app", "Web search tool calls", calls * WEB_SEARCH_CALL)
            self.priced(calls * WEB_SEARCH_CALL, line_item=True)


# -- Anthropic ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Messages:
    """One messages group: hourly ranges; ``every``/``offset``: the hours it has usage in."""

    workspace: str
    key: str
    model: str
    tier: str
    window: str
    uncached: tuple[int, int]
    read: tuple[int, int]
    out: tuple[int, int]
    searches: bool = False
    every: int = 1
    offset: int = 0


# Long-context requests (over 200k input tokens each) come a few times a day, mostly cache reads.
_MESSAGES = (
    _Messages("wrkspc_app", "apikey_app", "claude-sonnet-4-20250514", "standard", "0-200k",
              (30_000, 60_000), (0, 30_000), (1_000, 6_000), searches=True),
    _Messages("wrkspc_batch", "apikey_batch", "claude-sonnet-4-20250514", "batch", "0-200k",
              (40_000, 90_000), (0, 20_000), (1_000, 6_000)),
    _Messages("wrkspc_docs", "apikey_docs", "claude-sonnet-4-20250514", "standard", "200k-1M",
              (10_000, 30_000), (200_000, 300_000), (2_000, 5_000), every=4),
    _Messages("wrkspc_app", "apikey_app", "claude-3-5-haiku-20241022", "standard", "0-200k",
              (80_000, 150_000), (0, 50_000), (1_000, 6_000), searches=True),
    _Messages("wrkspc_prio", "apikey_prio", "claude-opus-4-1-20250805", "priority", "0-200k",
              (3_000, 6_000), (0, 3_000), (2_000, 5_000)),
    _Messages("wrkspc_docs", "apikey_docs", "claude-sonnet-4-5-20250929", "standard", "200k-1M",
              (10_000, 30_000), (200_000, 300_000), (2_000, 5_000), every=4, offset=2),
    _Messages("wrkspc_lab", "apikey_lab", UNKNOWN_ANTHROPIC, "standard", "0-200k",
              (5_000, 10_000), (0, 5_000), (1_000, 6_000)),
)  # fmt: skip
_TOKEN_TYPES = (
    ("uncached_input_tokens", "Input Tokens"),
    ("output_tokens", "Output Tokens"),
    ("cache_read_input_tokens", "Cache Read Tokens"),
    ("cache_creation.ephemeral_5m_input_tokens", "5m Cache Write Tokens"),
    ("cache_creation.ephemeral_1h_input_tokens", "1h Cache Write Tokens"),
)


def _anthropic(month: Month) -> None:
    truth = month.truth["anthropic"]
    bill = _Bill()
    hours = int((END - START) / HOUR)
    for h in range(hours):
        ts = int((START + h * HOUR).timestamp())
        day = ts - ts % 86_400
        month.anthropic_messages[ts] = [
            _message(h, g, day, bill, truth, spec) for g, spec in enumerate(_MESSAGES) if h % spec.every == spec.offset
        ]
    for d in range(int((END - START) / DAY)):
        day = int((START + d * DAY).timestamp())
        # Code execution: in the cost report only, never in the usage report (provider-apis.md §2.8.5).
        hours_used = _n(d, 90, 1, 5, 30)
        bill.add(
            day,
            "wrkspc_app",
            "Code Execution Usage",
            hours_used * Decimal("0.05"),
            cause="bill_only",
            cost_type="code_execution",
            model=None,
            token_type=None,
            service_tier=None,
            context_window=None,
        )
        month.claude_code[day] = _claude_code(d, day)
    for (day, workspace, text), line in sorted(bill.lines.items()):
        cents = (line["amount"] * 100).quantize(Decimal("0.001"), ROUND_HALF_UP)
        amount = cents / 100
        truth.billed += amount
        if line.get("cause"):
            setattr(truth, line["cause"], getattr(truth, line["cause"]) + amount)
        month.anthropic_costs.setdefault(day, []).append(
            {
                "amount": f"{cents}",
                "currency": "USD",
                "cost_type": line["cost_type"],
                "description": text,
                "model": line["model"],
                "service_tier": line["service_tier"],
                "token_type": line["token_type"],
                "context_window": line["context_window"],
                "workspace_id": workspace,
            }
        )


def _message(h: int, g: int, day: int, bill: _Bill, truth: Truth, spec: _Messages) -> dict:
    workspace, key, model, tier, window = spec.workspace, spec.key, spec.model, spec.tier, spec.window
    uncached = _n(h, 60 + g, 1, *spec.uncached)
    counts = {
        "uncached_input_tokens": uncached,
        "cache_read_input_tokens": _n(h, 60 + g, 2, *spec.read),
        "cache_creation.ephemeral_5m_input_tokens": _n(h, 60 + g, 3, 0, uncached // 10 + 1),
        "cache_creation.ephemeral_1h_input_tokens": _n(h, 60 + g, 4, 0, uncached // 20 + 1),
        "output_tokens": _n(h, 60 + g, 5, *spec.out),
    }
    web = _n(h, 60 + g, 6, 0, 6) if spec.searches else 0
    result = {
        "model": model,
        "workspace_id": workspace,
        "api_key_id": key,
        "service_tier": tier,
        "context_window": window,
        "uncached_input_tokens": counts["uncached_input_tokens"],
        "cache_read_input_tokens": counts["cache_read_input_tokens"],
        "cache_creation": {
            "ephemeral_5m_input_tokens": counts["cache_creation.ephemeral_5m_input_tokens"],
            "ephemeral_1h_input_tokens": counts["cache_creation.ephemeral_1h_input_tokens"],
        },
        "output_tokens": counts["output_tokens"],
        "server_tool_use": {"web_search_requests": web},
    }
    _price_message(day, workspace, model, tier, window, counts, web, bill, truth)
    return result


def _anthropic_rates(model: str, tier: str, window: str) -> tuple[str, ...] | None:
    if model == UNKNOWN_ANTHROPIC:
        return None
    if window == "200k-1M":
        return ANTHROPIC_TOKENS[(model, "long")]
    return ANTHROPIC_TOKENS[(model, "batch" if tier == "batch" else "standard")]


def _price_message(
    day: int, workspace: str, model: str, tier: str, window: str, counts: dict, web: int, bill: _Bill, truth: Truth
) -> None:
    rates = _anthropic_rates(model, tier, window)
    order = ("uncached_input_tokens", "output_tokens", "cache_read_input_tokens",
             "cache_creation.ephemeral_5m_input_tokens", "cache_creation.ephemeral_1h_input_tokens")  # fmt: skip
    used = rates or SECRET_ANTHROPIC
    costs = {t: counts[t] * _d(r) / M for t, r in zip(order, used, strict=True)}
    amount = sum(costs.values(), Decimal(0))
    searches = web * ANTHROPIC_WEB_SEARCH
    if rates is not None:
        truth.estimate += amount + searches
        truth.line_items += searches
        std = ANTHROPIC_STANDARD[model]
        truth.standard_tokens += sum((counts[t] * _d(r) / M for t, r in zip(order, std, strict=True)), Decimal(0))
    if tier == "priority":  # Priority Tier is billed outside the cost report (provider-apis.md §2.8.4)
        truth.billed_elsewhere -= amount + searches
        return
    bill_tier = "batch" if tier == "batch" else "standard"
    suffix = (" (Batch)" if tier == "batch" else "") + (" (Long Context)" if window == "200k-1M" else "")
    for token_type, label in _TOKEN_TYPES:
        bill.add(
            day,
            workspace,
            f"{model} Usage - {label}{suffix}",
            costs[token_type],
            cause=None if rates else "unpriced_models",
            cost_type="tokens",
            model=model,
            token_type=token_type,
            service_tier=bill_tier,
            context_window=window,
        )
    if web:
        bill.add(day, workspace, "Web Search Usage", searches, cost_type="web_search", model=model, token_type=None,
                 service_tier=bill_tier, context_window=window)  # fmt: skip


def _claude_code(d: int, day: int) -> list[dict]:
    """Claude Code for three developers: tokens the messages report already holds (§2.6)."""
    items = []
    for a in range(3):
        items.append(
            {
                "actor": {"type": "user_actor", "email_address": f"dev{a}@example.com"},
                "core_metrics": {
                    "num_sessions": _n(d, 80 + a, 1, 1, 9),
                    "commits_by_claude_code": _n(d, 80 + a, 2, 0, 5),
                },
                "customer_type": "api",
                "date": datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "terminal_type": "vscode",
                "model_breakdown": [
                    {
                        "estimated_cost": {"amount": _n(d, 80 + a, 3, 100, 900), "currency": "USD"},
                        "model": "claude-sonnet-4-20250514",
                        "tokens": {
                            "cache_creation": _n(d, 80 + a, 4, 0, 50_000),
                            "cache_read": _n(d, 80 + a, 5, 0, 200_000),
                            "input": _n(d, 80 + a, 6, 50_000, 300_000),
                            "output": _n(d, 80 + a, 7, 10_000, 60_000),
                        },
                    }
                ],
                "organization_id": "12345678-1234-5678-1234-567812345678",
            }
        )
    return items


__all__ = ["END", "OPENAI_ORG", "START", "UNBILLED_DAY", "Month", "Truth", "generate"]
