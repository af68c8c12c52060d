"""Spend anomalies: a day (or hour) far above its seasonal baseline, with what drove it.

Method (:data:`METHOD`), per scope (everything, one provider, one project ...):

1. The baseline of a point is the ``window`` points before it (28 days, or 14 days of hours),
   missing points counted as 0.
2. Seasonality: each point belongs to a *season* (its weekday for days; weekday-or-weekend and
   hour of day for hours). A season's factor is the median of its points in the window divided
   by the window's median, so a Monday is compared with Mondays' level, not with Sundays'.
3. Robust scale: after dividing every window point by its season's factor, the baseline is
   their median and the spread their MAD (median absolute deviation, scaled by 1.4826 so it
   matches a standard deviation for normal data). Medians ignore earlier spikes, which a mean
   and standard deviation would absorb into the baseline and so hide the next spike.
4. A point is an anomaly when its robust z-score ``(x/f - median) / (1.4826 MAD)`` reaches
   ``threshold`` *and* it is at least ``min_ratio`` above its expected value (median x f) *and*
   the excess is at least ``min_amount``: small scopes with tiny spend do not page anyone.
5. History: a point is scored only when its scope already had spend a whole ``window`` before
   it. A scope that starts inside the window (a new project, key or provider, and every scope at
   the start of the data) has nothing to compare with: it gets one "new spend" notice on its first
   day (:func:`new_spend`), never an anomaly every day until the baseline fills.

:func:`detect` is pure over ``(timestamp, amount)`` pairs; :func:`find_anomalies` reads the
series through :mod:`collector.query.report` and :func:`drivers` names the model, project and API key
whose spend grew most against the same baseline days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any

from sqlalchemy.engine import Engine

from collector.query.report import Converter, Filters, report, scope_filters

METHOD = "robust z-score (median/MAD) on a weekday-seasonal trailing baseline"
ZERO = Decimal(0)
MAD_SCALE = Decimal("1.4826")
GRAIN_STEP = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
#: Scope name -> query dimension ('all' has none).
SCOPE_DIMENSIONS = {"all": None, "provider": "provider", "account": "account", "project": "project", "team": "team"}
DRIVER_DIMENSIONS = ("model", "project", "api_key")


@dataclass(frozen=True)
class Money:
    """The currency anomalies are measured and told in, and the rates that convert into it."""

    currency: str
    converter: Converter


class AnomalyError(ValueError):
    """Bad anomaly-detection input (unknown grain or scope, bad thresholds)."""


@dataclass(frozen=True)
class Params:
    """Detection knobs (defaults from settings)."""

    threshold: Decimal = Decimal(6)
    min_ratio: Decimal = Decimal("0.5")
    min_amount: Decimal = Decimal(1)
    window: int = 28
    grain: str = "day"

    def __post_init__(self) -> None:
        if self.grain not in GRAIN_STEP:
            raise AnomalyError(f"grain must be one of {', '.join(GRAIN_STEP)}, got {self.grain!r}")
        if self.window < 7:
            raise AnomalyError(f"the baseline window must be at least 7 points, got {self.window}")
        if self.threshold <= 0 or self.min_ratio < 0 or self.min_amount < 0:
            raise AnomalyError("threshold must be positive; min_ratio and min_amount not negative")


@dataclass(frozen=True)
class Driver:
    """One dimension value whose spend grew most against the baseline."""

    dimension: str
    value: str
    amount: Decimal
    baseline: Decimal

    @property
    def increase(self) -> Decimal:
        """Spend above the baseline."""
        return self.amount - self.baseline


@dataclass
class Anomaly:
    """A point far above its baseline, in one scope and currency."""

    scope: str
    scope_value: str
    at: datetime
    grain: str
    amount: Decimal
    expected: Decimal
    score: Decimal
    currency: str = "USD"
    drivers: list[Driver] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``provider=openai`` or ``all``."""
        return "all" if self.scope == "all" else f"{self.scope}={self.scope_value}"

    def describe(self) -> str:
        """One line for alerts and the CLI."""
        when = self.at.strftime("%Y-%m-%d" if self.grain == "day" else "%Y-%m-%d %H:00Z")
        text = (
            f"{self.label} spent {self.amount:,.2f} {self.currency} on {when}, expected about "
            f"{self.expected:,.2f} (robust z {self.score:.1f})"
        )
        if self.drivers:
            text += "; driven by " + ", ".join(f"{d.dimension}={d.value} (+{d.increase:,.2f})" for d in self.drivers)
        return text


def season_of(grain: str) -> Callable[[datetime], tuple[int, ...]]:
    """The season key of a point: weekday for days, (weekend?, hour) for hours."""
    if grain == "day":
        return lambda ts: (ts.weekday(),)
    return lambda ts: (int(ts.weekday() >= 5), ts.hour)


def _median(values: Sequence[Decimal]) -> Decimal:
    return median(values) if values else ZERO


@dataclass(frozen=True)
class Score:
    """The verdict on one point."""

    at: datetime
    amount: Decimal
    expected: Decimal
    score: Decimal
    anomalous: bool


def score_point(
    at: datetime, amount: Decimal, window: Sequence[tuple[datetime, Decimal]], params: Params
) -> Score | None:
    """Score one point against its trailing window (None when the window is too short)."""
    if len(window) < params.window:
        return None
    season = season_of(params.grain)
    overall = _median([v for _, v in window])
    by_season: dict[tuple[int, ...], list[Decimal]] = defaultdict(list)
    for ts, v in window:
        by_season[season(ts)].append(v)
    factors: dict[tuple[int, ...], Decimal] = {}
    for key, values in by_season.items():
        m = _median(values)
        factors[key] = m / overall if overall > 0 and m > 0 else Decimal(1)
    adjusted = [v / factors[season(ts)] for ts, v in window]
    base = _median(adjusted)
    mad = _median([abs(v - base) for v in adjusted]) * MAD_SCALE
    factor = factors.get(season(at), Decimal(1))
    expected = base * factor
    if mad == 0:
        mad = max(base * Decimal("0.05"), Decimal("0.01"))
    z = (amount / factor - base) / mad
    excess = amount - expected
    anomalous = z >= params.threshold and excess >= params.min_amount and amount >= expected * (1 + params.min_ratio)
    return Score(at, amount, expected, z, anomalous)


def dense_series(points: Mapping[datetime, Decimal], start: datetime, end: datetime, grain: str) -> list:
    """Every point in ``[start, end)`` at ``grain`` with its amount, 0 where none was recorded."""
    step = GRAIN_STEP[grain]
    out = []
    ts = start
    while ts < end:
        out.append((ts, points.get(ts, ZERO)))
        ts += step
    return out


def detect(
    points: Mapping[datetime, Decimal] | Iterable[tuple[datetime, Decimal]],
    params: Params,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Score]:
    """The anomalous points of one series in ``[since, until)`` (default: all scoreable points).

    ``points`` are aligned to the grain (UTC midnights or hours); the window before ``since`` is
    read from ``points`` too, so pass the history as well.
    """
    data = dict(points) if not isinstance(points, Mapping) else points
    spent = [ts for ts, v in data.items() if v]
    if not spent:
        return []
    step = GRAIN_STEP[params.grain]
    first = min(spent)
    last = max(data) + step
    since = max(since or first, first + step * params.window)  # a whole window of history first
    until = until or last
    series = dense_series(data, min(first, since - step * params.window), until, params.grain)
    out = []
    for i, (ts, value) in enumerate(series):
        if ts < since or i < params.window:
            continue
        verdict = score_point(ts, value, series[i - params.window : i], params)
        if verdict is not None and verdict.anomalous:
            out.append(verdict)
    return out


@dataclass(frozen=True)
class NewSpend:
    """A scope's first spend: no history to compare with, so a notice instead of anomalies."""

    scope: str
    scope_value: str
    at: datetime
    grain: str
    amount: Decimal
    currency: str = "USD"

    @property
    def label(self) -> str:
        """``project=proj_new`` or ``all``."""
        return "all" if self.scope == "all" else f"{self.scope}={self.scope_value}"

    def describe(self) -> str:
        """One line for notices and the CLI."""
        when = self.at.strftime("%Y-%m-%d" if self.grain == "day" else "%Y-%m-%d %H:00Z")
        return f"new spend: {self.label} first spent {self.amount:,.2f} {self.currency} on {when} (no history yet)"


def first_spend(points: Mapping[datetime, Decimal]) -> tuple[datetime, Decimal] | None:
    """The first point with spend of a series, and its amount."""
    spent = sorted((ts, v) for ts, v in points.items() if v)
    return spent[0] if spent else None


# -- from the database ---------------------------------------------------------------------------


def _floor(ts: datetime, grain: str) -> datetime:
    ts = ts.astimezone(UTC)
    if grain == "day":
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def scope_series(
    engine: Engine,
    scope: str,
    since: datetime,
    until: datetime,
    grain: str = "day",
    basis: str = "preferred",
    *,
    money: Money | None = None,
) -> dict[tuple[str, str], dict[datetime, Decimal]]:
    """Spend per (scope value, currency) per point, from the query layer (unpriced left out).

    With ``money`` every day is converted into its currency first (that day's rate), so a scope
    billed in two currencies is one series; days without a rate stay a series of their own.
    """
    if scope not in SCOPE_DIMENSIONS:
        raise AnomalyError(f"unknown scope {scope!r}; accepted: {', '.join(SCOPE_DIMENSIONS)}")
    dim = SCOPE_DIMENSIONS[scope]
    result = report(engine, Filters(since, until), by=(dim,) if dim else (), grain=grain, basis=basis, **_in(money))
    out: dict[tuple[str, str], dict[datetime, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for row in result.rows:
        if row.cost is None or row.period is None or row.section != "provider":
            continue
        value = row.dims.get(dim, "") if dim else ""
        out[(value, row.currency)][row.period] += row.cost
    return {k: dict(v) for k, v in out.items()}


def find_anomalies(
    engine: Engine,
    *,
    since: datetime,
    until: datetime,
    scopes: Sequence[str] = ("all", "provider"),
    params: Params | None = None,
    with_drivers: bool = True,
    money: Money | None = None,
) -> list[Anomaly]:
    """Anomalous days (or hours) in ``[since, until)`` for every value of every scope.

    The baseline window before ``since`` is read as well, so the first day can be scored.
    """
    params = params or Params()
    step = GRAIN_STEP[params.grain]
    since, until = _floor(since, params.grain), _floor(until, params.grain)
    history_start = since - step * params.window
    out: list[Anomaly] = []
    for scope in scopes:
        series = scope_series(engine, scope, history_start, until, params.grain, money=money)
        for (value, currency), points in series.items():
            for s in detect(points, params, since=since, until=until):
                out.append(Anomaly(scope, value, s.at, params.grain, s.amount, s.expected, s.score, currency))
    if with_drivers:
        for a in out:
            a.drivers = drivers(engine, a, params, money=money)
    out.sort(key=lambda a: (a.at, a.scope, a.scope_value))
    return out


def new_spend(
    engine: Engine,
    *,
    since: datetime,
    until: datetime,
    scopes: Sequence[str] = ("all", "provider"),
    params: Params | None = None,
    money: Money | None = None,
) -> list[NewSpend]:
    """Scope values whose first spend falls in ``[since, until)`` (looking back a whole window).

    A value that had spend in the window before ``since`` is not new, however little it spent.
    """
    params = params or Params()
    step = GRAIN_STEP[params.grain]
    since, until = _floor(since, params.grain), _floor(until, params.grain)
    out = []
    for scope in scopes:
        series = scope_series(engine, scope, since - step * params.window, until, params.grain, money=money)
        for (value, currency), points in series.items():
            first = first_spend(points)
            if first is not None and since <= first[0] < until:
                out.append(NewSpend(scope, value, first[0], params.grain, first[1], currency))
    out.sort(key=lambda n: (n.at, n.scope, n.scope_value))
    return out


def scan(
    engine: Engine,
    *,
    since: datetime,
    until: datetime,
    scopes: Sequence[str] = ("all", "provider"),
    params: Params | None = None,
    money: Money | None = None,
) -> tuple[list[Anomaly], list[NewSpend]]:
    """Anomalies (without drivers) and new-spend notices of ``[since, until)`` from one read per scope.

    What :func:`find_anomalies` (``with_drivers=False``) and :func:`new_spend` return, for a page
    that shows both: each scope's series (window plus baseline) is read once, not twice, and the
    drivers, three reads per anomaly, are left to :func:`drivers` for the one a person asks about.
    """
    params = params or Params()
    step = GRAIN_STEP[params.grain]
    since, until = _floor(since, params.grain), _floor(until, params.grain)
    found: list[Anomaly] = []
    notices: list[NewSpend] = []
    for scope in scopes:
        series = scope_series(engine, scope, since - step * params.window, until, params.grain, money=money)
        for (value, currency), points in series.items():
            for s in detect(points, params, since=since, until=until):
                found.append(Anomaly(scope, value, s.at, params.grain, s.amount, s.expected, s.score, currency))
            first = first_spend(points)
            if first is not None and since <= first[0] < until:
                notices.append(NewSpend(scope, value, first[0], params.grain, first[1], currency))
    found.sort(key=lambda a: (a.at, a.scope, a.scope_value))
    notices.sort(key=lambda n: (n.at, n.scope, n.scope_value))
    return found, notices


def drivers(
    engine: Engine, anomaly: Anomaly, params: Params | None = None, top: int = 1, *, money: Money | None = None
) -> list[Driver]:
    """For each of model, project and API key: the value whose spend rose most above its baseline.

    The baseline of a value is its median over the same-season points of the window (for a
    Tuesday, the previous four Tuesdays), the same points the anomaly was measured against.
    """
    params = params or Params(grain=anomaly.grain)
    step = GRAIN_STEP[anomaly.grain]
    season = season_of(anomaly.grain)
    same = [
        anomaly.at - step * i
        for i in range(1, params.window + 1)
        if season(anomaly.at - step * i) == season(anomaly.at)
    ]
    dim = SCOPE_DIMENSIONS.get(anomaly.scope)
    found: list[Driver] = []
    for d in DRIVER_DIMENSIONS:
        if d == dim:
            continue
        filters = _scope_filters(anomaly, min(same) if same else anomaly.at, anomaly.at + step)
        result = report(engine, filters, by=(d,), grain=anomaly.grain, **_in(money))
        per: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
        for row in result.rows:
            if row.cost is None or row.period is None or row.currency != anomaly.currency:
                continue
            per[row.dims[d]][row.period] = per[row.dims[d]].get(row.period, ZERO) + row.cost
        ranked = []
        for value, series in per.items():
            now = series.get(anomaly.at, ZERO)
            base = _median([series.get(ts, ZERO) for ts in same])
            ranked.append(Driver(d, value or "(none)", now, base))
        ranked.sort(key=lambda x: x.increase, reverse=True)
        found.extend(x for x in ranked[:top] if x.increase > 0)
    return found


def _in(money: Money | None) -> dict[str, Any]:
    return {"currency": money.currency, "converter": money.converter} if money and money.currency else {}


def _scope_filters(anomaly: Anomaly, since: datetime, until: datetime) -> Filters:
    return scope_filters(anomaly.scope, anomaly.scope_value, since, until)
