"""Budget caps: which enforced budgets the proxy checks, with their spend so far.

A budget marked ``enforce`` (``llm-usage budgets enforce``) becomes a cap: once its period's
spend reaches the amount, the proxy refuses calls carrying a monitor token in its scope (403,
naming the budget) until the next period or until an admin lifts it (``budgets lift``, which
holds until the end of the current period).

Spend = the preferred basis (billed where a billed source covers the day, estimated otherwise,
design rule 5) for the period's days *before today*, plus the proxy's own estimate for today
(``proxy_events.cost``). Provider data for today is partial and arrives late, so today comes
from the proxy alone and nothing is counted twice. The proxy's USD estimates are converted into
the budget's currency with the ``fx_rates`` table; a cap with no usable rate is skipped (logged).

Scopes: ``all``, ``provider``, ``project``, ``team`` and ``api_key`` (the proxy's key
fingerprint). An ``account`` budget cannot be matched to a proxied call and is never enforced.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from collector.finance.budgets import BUDGETS, DAY, ZERO, Budget, BudgetError, daily_spend_in, get_budget, list_budgets
from collector.finance.fx import FxError, RateBook
from collector.proxy.limits import Cap
from collector.proxy.models import PROXY_EVENTS

log = logging.getLogger(__name__)

#: Budget scopes the proxy can match a call to.
ENFORCEABLE = ("all", "provider", "project", "team", "api_key")
_SCOPE_COLUMN = {
    "provider": PROXY_EVENTS.c.provider,
    "project": PROXY_EVENTS.c.project,
    "team": PROXY_EVENTS.c.team,
    "api_key": PROXY_EVENTS.c.api_key_fp,
}


def proxy_spend(engine: Engine, budget: Budget, since: datetime, until: datetime) -> Decimal:
    """USD the proxy estimated for calls in the budget's scope between ``since`` and ``until``."""
    stmt = select(func.sum(PROXY_EVENTS.c.cost)).where(PROXY_EVENTS.c.ts >= since, PROXY_EVENTS.c.ts < until)
    column = _SCOPE_COLUMN.get(budget.scope)
    if column is not None:
        stmt = stmt.where(column == budget.scope_value)
    with engine.connect() as conn:
        total = conn.execute(stmt).scalar()
    return Decimal(total) if total is not None else ZERO


def cap_of(engine: Engine, budget: Budget, now: datetime, rates: RateBook | None = None) -> Cap | None:
    """The budget as a cap at ``now``, or None when it is not enforced now (lifted, outside its period)."""
    if not budget.enforce or not budget.active or budget.scope not in ENFORCEABLE:
        return None
    if budget.lifted_until is not None and budget.lifted_until > now:
        return None
    period = budget.period_at(now)
    if period is None:
        return None
    start, end = period
    today = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
    before = ZERO
    if start < today:
        series, _ = daily_spend_in(engine, budget, start, min(today, end), rates)
        before = sum(series.values(), ZERO)
    per_usd = Decimal(1)
    if budget.currency != "USD":
        book = rates or RateBook.load(engine)
        per_usd = book.convert(Decimal(1), "USD", budget.currency, today.date()).amount
    spent = before + proxy_spend(engine, budget, max(start, today), today + DAY) * per_usd
    return Cap(budget.id, budget.name, budget.scope, budget.scope_value, budget.amount, spent, budget.currency, per_usd)


def enforced_caps(engine: Engine, now: datetime | None = None) -> list[Cap]:
    """Every budget the proxy enforces now, with its spend (the sidecar's cap loader)."""
    now = now or datetime.now(UTC)
    budgets = [b for b in list_budgets(engine, active_only=True) if b.enforce]
    if not budgets:
        return []
    rates = RateBook.load(engine)
    caps = []
    for budget in budgets:
        try:
            cap = cap_of(engine, budget, now, rates)
        except FxError as exc:
            log.warning("budget %d not enforced: %s", budget.id, exc)
            continue
        if cap is not None:
            caps.append(cap)
    return caps


def set_enforce(engine: Engine, budget_id: int, enforce: bool) -> Budget:
    """Turn a budget's cap on (clearing any lift) or off.

    Raises:
        BudgetError: unknown id, or a scope the proxy cannot enforce.
    """
    budget = get_budget(engine, budget_id)
    if enforce and budget.scope not in ENFORCEABLE:
        raise BudgetError(f"scope: an {budget.scope} budget cannot be enforced by the proxy ({', '.join(ENFORCEABLE)})")
    with engine.begin() as conn:
        conn.execute(update(BUDGETS).where(BUDGETS.c.id == budget_id).values(enforce=enforce, lifted_until=None))
    return get_budget(engine, budget_id)


def lift(engine: Engine, budget_id: int, now: datetime | None = None) -> datetime:
    """Lift an enforced budget's cap until the end of its current period; returns that end.

    Raises:
        BudgetError: unknown id, a budget not enforced, or no current period.
    """
    now = now or datetime.now(UTC)
    budget = get_budget(engine, budget_id)
    if not budget.enforce:
        raise BudgetError(f"budget {budget_id} is not enforced; nothing to lift")
    period = budget.period_at(now)
    if period is None:
        raise BudgetError(f"budget {budget_id} has no period containing now")
    with engine.begin() as conn:
        conn.execute(update(BUDGETS).where(BUDGETS.c.id == budget_id).values(lifted_until=period[1]))
    return period[1]
