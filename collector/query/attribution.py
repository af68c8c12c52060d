"""Why the bill and usage x price differ: the estimate in parts, and the gap in named causes.

For one provider account, UTC day and currency (a reconciliation line), with *billed* ``B`` and
*estimated* ``E`` (design.md rule 5):

* the estimate splits into **parts**: the tokens at genai-prices' standard rates (what a tool
  that ignores tiers would say), the difference the row's service tier, batch flag, long-context
  window and fine-tuned base make, and the non-token line items (images, speech, transcription,
  tool calls, sessions, storage);
* ``B - E`` splits into **causes**, each computed from data the product holds:

  - ``unpriced_models``: bill lines naming a model whose usage no price table knows (their billed
    amount: the estimate has nothing for them);
  - ``bill_only``: bill lines no usage reports: charges the usage APIs never show (Anthropic code
    execution, OpenAI fine-tuning training: the price table's ``bill_only`` list) and lines naming
    a model that has no usage at all that day;
  - ``billed_elsewhere``: usage the provider bills outside this bill, taken out of the estimate
    (Anthropic Priority Tier, absent from the cost report: provider-apis.md §2.8.4);
  - ``credits``, ``discounts``, ``tax``: such lines in the bill (by their text; a negative line of
    no other kind is a credit);
  - ``one_sided``: a line with only one side: a bill with no usage (``+B`` less the lines above)
    or usage with no bill (``-E``);
  - ``residual``: what is left, ``B - E - (the causes above)``: the figure to drive down.

The parts add up to ``E`` and the causes to ``B - E``, exactly, on every line; a window's figures
are sums of its lines (one currency each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from collector.core.model_ids import canonical_model
from collector.core.price_table import PriceTable
from collector.core.pricing import standard_tokens_cost

#: The estimate's parts, in the order a waterfall from usage to bill draws them.
PARTS: tuple[str, ...] = ("standard_tokens", "tiers", "line_items")
#: The causes of billed - estimated, in waterfall order; ``residual`` is always last.
CAUSES: tuple[str, ...] = (
    "unpriced_models",
    "bill_only",
    "billed_elsewhere",
    "credits",
    "discounts",
    "tax",
    "one_sided",
    "residual",
)
LABELS: dict[str, str] = {
    "standard_tokens": "tokens at standard rates",
    "tiers": "service tier, batch, long context, fine-tuned",
    "line_items": "images, audio, tool calls, storage",
    "unpriced_models": "models in no price table (as billed)",
    "bill_only": "bill lines no usage reports",
    "billed_elsewhere": "usage billed outside this bill",
    "credits": "credits",
    "discounts": "discounts",
    "tax": "tax",
    "one_sided": "days or accounts with one side only",
    "residual": "residual (unexplained)",
}
#: Bill-line texts that are tax, discounts or credits rather than usage (FOCUS ``ChargeCategory`` is
#: part of an imported line's text; cost APIs write free text: provider-apis.md §1.7.5).
_TAX = re.compile(r"\b(?:tax|taxes|vat|gst|hst)\b", re.IGNORECASE)
_DISCOUNT = re.compile(r"\b(?:discount|discounts|savings plan|rebate|commitment)\b", re.IGNORECASE)
_CREDIT = re.compile(r"\b(?:credit|credits|refund|refunds|promotion|promotional|grant|adjustment)\b", re.IGNORECASE)
#: OpenAI cost lines read ``<model>, <direction>`` with an optional ``<tier> | `` in front
#: (provider-apis.md §1.7.5: "gpt-4.1-2025-04-14, output", "priority | gpt-5.6-sol, output, long context").
_LINE_MODEL = re.compile(r"^\s*(?:[\w-]+\s*\|\s*)?(?P<model>[^\s,|]+)\s*,")


def line_model(provider: str, line_item: str, model: str) -> str:
    """The canonical model a bill line names: its own ``model`` column, else its text's first field."""
    if model:
        return model
    match = _LINE_MODEL.match(line_item)
    return canonical_model(provider, match.group("model")) if match else ""


def classify(table: PriceTable, provider: str, line_item: str, cost: Decimal) -> str:
    """``tax``, ``discounts``, ``credits``, ``bill_only`` or ``usage`` for one bill line."""
    if _TAX.search(line_item):
        return "tax"
    if _DISCOUNT.search(line_item):
        return "discounts"
    if _CREDIT.search(line_item):
        return "credits"
    if table.bill_only_label(provider, line_item):
        return "bill_only"
    return "credits" if cost < 0 else "usage"


@dataclass
class Facts:
    """What attribution needs from one reconciliation line, gathered from the two reports."""

    bill_lines: list[tuple[str, str, Decimal]] = field(default_factory=list)  # (class, model, cost)
    parts: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(PARTS, Decimal(0)))
    elsewhere: Decimal = Decimal(0)
    priced_models: set[str] = field(default_factory=set)
    unpriced_models: set[str] = field(default_factory=set)

    def add_estimate(
        self,
        provider: str,
        model: str,
        day: date,
        cost: Decimal,
        tokens: dict[str, int],
        *,
        elsewhere: bool,
    ) -> None:
        """Split one estimated group into the parts (tokens at standard rates, tiers, line items)."""
        self.priced_models.add(model)
        if elsewhere:
            self.elsewhere += cost
        if not (tokens["input_tokens"] or tokens["output_tokens"]):
            if cost:
                self.parts["line_items"] += cost
            return
        standard = standard_tokens_cost(provider, model, day, **tokens) if model else None
        if standard is None:  # priced by the product's table alone (a fine-tuned or table-only model)
            self.parts["tiers"] += cost
            return
        self.parts["standard_tokens"] += standard
        self.parts["tiers"] += cost - standard


def attribute(billed: Decimal | None, estimated: Decimal | None, facts: Facts) -> dict[str, Decimal]:
    """The causes of ``billed - estimated`` on one line (they add up to it exactly)."""
    causes = dict.fromkeys(CAUSES, Decimal(0))
    has_usage = estimated is not None or bool(facts.unpriced_models)
    if billed is None:
        causes["one_sided"] = -(estimated or Decimal(0))
        return causes
    for cls, _model, cost in facts.bill_lines:
        if cls in ("tax", "discounts", "credits", "bill_only"):
            causes[cls] += cost
    if not has_usage:
        causes["one_sided"] = billed - sum(causes.values(), Decimal(0))
        return causes
    unpriced_only = facts.unpriced_models - facts.priced_models
    seen = facts.priced_models | facts.unpriced_models
    for cls, model, cost in facts.bill_lines:
        if cls != "usage" or not model:
            continue
        if model in unpriced_only:
            causes["unpriced_models"] += cost
        elif model not in seen:
            causes["bill_only"] += cost
    causes["billed_elsewhere"] = -facts.elsewhere
    explained = sum(causes.values(), Decimal(0))
    causes["residual"] = billed - (estimated or Decimal(0)) - explained
    return causes


__all__ = ["CAUSES", "LABELS", "PARTS", "Facts", "attribute", "classify", "line_model"]
