"""Plotly figures and number formatting for the dashboard (imports nothing from Streamlit).

Every figure has a title, axis titles with units and a hover template that shows the human
value, and every provider keeps one colour on every page (:func:`provider_color`). Figures are
built from pandas DataFrames that :mod:`dashboard.queries` returns.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import plotly.graph_objects as go

from collector.core.catalog import PROVIDERS
from collector.query.reconcile import CAUSES, LABELS, PARTS

#: Colours for series that are not providers (models, projects ...) and unknown providers.
PALETTE: tuple[str, ...] = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
    "#1f77b4",
    "#2ca02c",
)
#: Shown where there is no value (no amount, no rate).
NO_VALUE = "\N{EN DASH}"
BASIS_COLORS = {"billed": "#1f4e79", "estimated": "#8fb3de", "unpriced": "#c9c9c9"}
LAYOUT = {
    "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": -0.35, "x": 0},
    "hovermode": "x unified",
    "height": 380,
    "modebar": {"orientation": "v"},
}


def provider_color(provider: str) -> str:
    """The provider's colour: fixed for known ones, a stable hash-picked one for others."""
    if provider in PROVIDERS:
        return PROVIDERS[provider].colour
    digest = hashlib.blake2b(provider.encode(), digest_size=2).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]


def color_map(dimension: str, values: Sequence[str]) -> dict[str, str]:
    """Series colours: providers by :func:`provider_color`, anything else from the palette in order."""
    if dimension == "provider":
        return {v: provider_color(v) for v in values}
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}


# -- numbers for people ---------------------------------------------------------------------------

_SUFFIXES = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k"))


def compact(value: float | int | Decimal, digits: int = 1) -> str:
    """``1234`` -> ``1.2k``, ``3_400_000`` -> ``3.4M``, ``1_250_000`` -> ``1.3M`` (half up)."""
    if isinstance(value, float) and math.isnan(value):
        return NO_VALUE
    x = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    sign = "-" if x < 0 else ""
    x = abs(x)
    quantum = Decimal(1).scaleb(-digits)
    for i, (size, suffix) in enumerate(_SUFFIXES):
        if x >= size:
            scaled = (x / Decimal(size)).quantize(quantum, rounding=ROUND_HALF_UP)
            if scaled >= 1000 and i > 0:  # 999.96k reads better as 1M
                size, suffix = _SUFFIXES[i - 1]
                scaled = (x / Decimal(size)).quantize(quantum, rounding=ROUND_HALF_UP)
            return f"{sign}{_trim(scaled)}{suffix}"
    small = x.quantize(quantum, rounding=ROUND_HALF_UP)
    if small >= 1000:
        return f"{sign}1k"
    return f"{sign}{_trim(small)}"


def _trim(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(value: float | Decimal | None, currency: str = "USD") -> str:
    """Compact money: ``$1.2k``, ``$950``, ``$3.41``, ``$0.004``; ``NO_VALUE`` for no amount."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_VALUE
    x = float(value)
    symbol = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}.get(currency, "")
    sign = "-" if x < 0 else ""
    x = abs(x)
    if x >= 1000:
        body = compact(x)
    elif x >= 1 or x == 0:
        body = f"{x:,.2f}"
    else:
        body = f"{x:.3g}"
    text = f"{sign}{symbol}{body}"
    return text if symbol else f"{text} {currency}"


def money_exact(value: Decimal | None, currency: str = "USD") -> str:
    """Money to the cent with thousands separators: ``$12,345.67`` (totals people check)."""
    if value is None:
        return NO_VALUE
    symbol = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}.get(currency, "")
    q = Decimal(value).quantize(Decimal("0.01"))
    sign = "-" if q < 0 else ""
    text = f"{sign}{symbol}{abs(q):,.2f}"
    return text if symbol else f"{text} {currency}"


def tokens(value: float | int) -> str:
    """``3.4M tokens``."""
    return f"{compact(value)} tokens"


def percent(value: float | None, digits: int = 1) -> str:
    """``12.3%``; ``NO_VALUE`` for no value."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return NO_VALUE
    return f"{value * 100:.{digits}f}%"


# -- figures --------------------------------------------------------------------------------------


def _apply_layout(fig: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    fig.update_layout(title={"text": title}, xaxis_title=x_title, yaxis_title=y_title, **LAYOUT)
    return fig


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text="no data in this window", showarrow=False, font={"size": 14})
    fig.update_layout(title={"text": title}, xaxis={"visible": False}, yaxis={"visible": False}, height=250)
    return fig


def stacked_over_time(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    title: str,
    y_title: str,
    kind: str = "bar",
    unit: str = "money",
    x_title: str = "day (UTC)",
    currency: str = "USD",
) -> go.Figure:
    """Stacked bars (or areas) of ``y`` over ``x`` with one series per ``color`` value.

    Args:
        df: long-form data with columns ``x``, ``y``, ``color``.
        x: time column.
        y: value column.
        color: series column (``provider`` gets the provider colours).
        title: chart title.
        y_title: y-axis title with its unit, e.g. ``"cost (USD)"``.
        kind: ``"bar"`` or ``"area"``.
        unit: ``"money"`` or ``"tokens"`` for the hover text.
        x_title: x-axis title.
        currency: the money's currency, for the hover text.
    """
    if df.empty:
        return _empty(title)
    data = df.groupby([x, color], as_index=False, sort=True)[y].sum()
    order = data.groupby(color)[y].sum().sort_values(ascending=False).index.tolist()
    colors = color_map(color, [str(v) for v in order])
    fmt = functools.partial(money, currency=currency) if unit == "money" else tokens
    fig = go.Figure()
    for name in order:
        part = data[data[color] == name]
        label = str(name) or "(none)"
        hover = [fmt(v) for v in part[y]]
        common = {"x": part[x], "y": part[y], "name": label, "customdata": hover}
        template = f"{label}: %{{customdata}}<extra></extra>"
        if kind == "area":
            fig.add_trace(
                go.Scatter(
                    **common,
                    mode="lines",
                    stackgroup="one",
                    line={"width": 0.5, "color": colors[str(name)]},
                    hovertemplate=template,
                )
            )
        else:
            fig.add_trace(go.Bar(**common, marker_color=colors[str(name)], hovertemplate=template))
    if kind != "area":
        fig.update_layout(barmode="stack")
    return _apply_layout(fig, title, x_title, y_title)


def ranked_bar(
    df: pd.DataFrame,
    *,
    label: str,
    value: str,
    title: str,
    x_title: str,
    unit: str = "money",
    color: str | None = None,
    currency: str = "USD",
) -> go.Figure:
    """Horizontal bars, largest at the top (spend by provider, top models, top projects)."""
    if df.empty:
        return _empty(title)
    data = df.sort_values(value, ascending=True)
    labels = [str(v) or "(none)" for v in data[label]]
    fmt = functools.partial(money, currency=currency) if unit == "money" else tokens
    if color == "provider":
        marker = [provider_color(str(v)) for v in data[label]]
    elif color is not None and color in data:
        marker = [provider_color(str(v)) for v in data[color]]
    else:
        marker = [PALETTE[0]] * len(data)
    fig = go.Figure(
        go.Bar(
            x=data[value],
            y=labels,
            orientation="h",
            marker_color=marker,
            customdata=[fmt(v) for v in data[value]],
            hovertemplate="%{y}: %{customdata}<extra></extra>",
            text=[fmt(v) for v in data[value]],
            textposition="auto",
        )
    )
    fig.update_layout(title={"text": title}, xaxis_title=x_title, yaxis_title="", showlegend=False)
    fig.update_layout(margin=LAYOUT["margin"], height=max(220, 60 + 28 * len(data)), modebar=LAYOUT["modebar"])
    return fig


def basis_share(
    df: pd.DataFrame, *, title: str = "Billed vs estimated share of spend", currency: str = "USD"
) -> go.Figure:
    """Donut of money by basis (billed, estimated); ``df`` has columns ``basis`` and ``cost``."""
    data = df[df["cost"].notna() & (df["cost"] != 0)] if not df.empty else df
    if data.empty:
        return _empty(title)
    fig = go.Figure(
        go.Pie(
            labels=data["basis"],
            values=data["cost"],
            hole=0.55,
            marker={"colors": [BASIS_COLORS.get(b, PALETTE[0]) for b in data["basis"]]},
            customdata=[money(v, currency) for v in data["cost"]],
            hovertemplate="%{label}: %{customdata} (%{percent})<extra></extra>",
            sort=False,
        )
    )
    fig.update_layout(title={"text": title}, margin=LAYOUT["margin"], height=300, modebar=LAYOUT["modebar"])
    return fig


def token_mix(df: pd.DataFrame, *, x: str, title: str, x_title: str = "day (UTC)") -> go.Figure:
    """Stacked areas of uncached input, cache read, cache write and output tokens over time."""
    parts = {
        "uncached input": "uncached_input_tokens",
        "cache read": "cache_read_tokens",
        "cache write": "cache_write_tokens",
        "output": "output_tokens",
    }
    if df.empty:
        return _empty(title)
    data = df.groupby(x, as_index=False, sort=True)[list(parts.values())].sum()
    fig = go.Figure()
    for i, (name, col) in enumerate(parts.items()):
        fig.add_trace(
            go.Scatter(
                x=data[x],
                y=data[col],
                name=name,
                mode="lines",
                stackgroup="one",
                line={"width": 0.5, "color": PALETTE[i]},
                customdata=[tokens(v) for v in data[col]],
                hovertemplate=f"{name}: %{{customdata}}<extra></extra>",
            )
        )
    return _apply_layout(fig, title, x_title, "tokens")


def line_over_time(
    df: pd.DataFrame, *, x: str, y: str, color: str, title: str, y_title: str, percent_axis: bool = False
) -> go.Figure:
    """One line per ``color`` value (cache hit rate per model, cost per million tokens ...)."""
    if df.empty:
        return _empty(title)
    order = sorted(df[color].astype(str).unique())
    colors = color_map(color, order)
    fig = go.Figure()
    for name in order:
        part = df[df[color].astype(str) == name].sort_values(x)
        text = [percent(v) if percent_axis else money(v) for v in part[y]]
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                name=name,
                mode="lines+markers",
                line={"color": colors[name]},
                customdata=text,
                hovertemplate=f"{name}: %{{customdata}}<extra></extra>",
            )
        )
    fig = _apply_layout(fig, title, "day (UTC)", y_title)
    if percent_axis:
        fig.update_yaxes(tickformat=".0%")
    return fig


def reconciliation_lines(df: pd.DataFrame, *, title: str, currency: str = "USD") -> go.Figure:
    """Billed, estimated, proxy-recorded and OpenTelemetry money per day for one provider account, in one currency."""
    if df.empty:
        return _empty(title)
    styles = {
        "billed": ("billed (provider)", BASIS_COLORS["billed"], "solid"),
        "estimated": ("usage x price table", "#e45756", "dash"),
        "proxy": ("proxy-recorded", "#54a24b", "dot"),
        "otel": ("OpenTelemetry-reported", "#b279a2", "dashdot"),
    }
    fig = go.Figure()
    for col, (name, colour, dash) in styles.items():
        if col not in df or df[col].isna().all():
            continue
        fig.add_trace(
            go.Scatter(
                x=df["day"],
                y=df[col],
                name=name,
                mode="lines+markers",
                line={"color": colour, "dash": dash},
                customdata=[money(v, currency) for v in df[col]],
                hovertemplate=f"{name}: %{{customdata}}<extra></extra>",
            )
        )
    return _apply_layout(fig, title, "day (UTC)", f"cost ({currency})")


def reconciliation_waterfall(row: pd.Series, *, title: str, currency: str = "USD") -> go.Figure:
    """From tokens at standard rates to the bill: the estimate's parts, then each named cause.

    ``row`` is one line of :func:`dashboard.queries.reconciliation_summary` (the parts and causes
    of :mod:`collector.query.attribution`, by name). The bars between "estimated" and "billed"
    add up to the gap exactly; the last step before "billed" is the unexplained residual.
    """
    steps: list[tuple[str, str, float]] = [("tokens at standard rates", "absolute", float(row["standard_tokens"]))]
    steps += [(LABELS[name], "relative", float(row[name])) for name in PARTS[1:]]
    steps.append(("estimated (usage x price)", "total", 0.0))
    steps += [(LABELS[name], "relative", float(row[name])) for name in CAUSES if row[name] or name == "residual"]
    steps.append(("billed", "total", 0.0))
    labels = [s[0] for s in steps]
    values = [s[2] for s in steps]
    shown = [
        money(float(row["estimated"]) if name.startswith("estimated") else float(row["billed"]), currency)
        if measure == "total"
        else money(value, currency)
        for name, measure, value in steps
    ]
    fig = go.Figure(
        go.Waterfall(
            x=labels,
            y=values,
            measure=[s[1] for s in steps],
            text=shown,
            textposition="outside",
            customdata=shown,
            hovertemplate="%{x}: %{customdata}<extra></extra>",
            increasing={"marker": {"color": "#e45756"}},
            decreasing={"marker": {"color": "#54a24b"}},
            totals={"marker": {"color": BASIS_COLORS["billed"]}},
            connector={"line": {"color": "#9d9d9d", "width": 1}},
        )
    )
    fig = _apply_layout(fig, title, "", f"cost ({currency})")
    fig.update_layout(showlegend=False, hovermode="closest", height=460)
    return fig
