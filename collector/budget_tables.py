"""Tables of issue 7: budgets, the alerts already sent, versioned team rules, and FX rates.

They live in one module so ``collector/models.py`` registers them with one import, and the
hand-written migration ``0007_budgets`` mirrors them column for column (the migrations test
compares the two).

* ``budgets``: an amount per month (or a fixed custom period) for one scope, with its alert
  thresholds in percent and whether a projected overrun alerts too.
* ``alert_events``: one row per alert *key* (budget, period, threshold), unique, so an alert is
  sent once per threshold per period even when several collectors evaluate at once: the row is
  claimed before sending and marked ``sent`` or ``failed`` afterwards.
* ``team_rules``: every save of the rule list writes a new ``version`` holding the whole list,
  so a chargeback can say which rules made it and an old month can be re-run with its rules.
* ``fx_rates``: one rate per (day, base, quote) with its source (``manual``, ``csv:<file>``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, true
from sqlmodel import Field, SQLModel

from collector.sqltypes import MONEY_SCALE, ScaledDecimal, UTCDateTime

#: Rates keep 10 decimal places, like money.
RATE_SCALE = MONEY_SCALE


class Budget(SQLModel, table=True):
    """``budgets``: an amount for one scope over each month (or one custom period)."""

    __tablename__ = "budgets"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(255), nullable=False))
    #: ``all``, ``provider``, ``account``, ``project``, ``api_key`` or ``team``.
    scope: str = Field(sa_column=Column(String(16), nullable=False))
    #: The provider / account / project / key id / team name; ``''`` for ``all``.
    scope_value: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    amount: Decimal = Field(sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=False))
    currency: str = Field(default="USD", sa_column=Column(String(3), nullable=False, server_default="USD"))
    #: ``month`` (every calendar month, UTC) or ``custom`` (``starts_at`` .. ``ends_at``).
    period: str = Field(default="month", sa_column=Column(String(16), nullable=False, server_default="month"))
    starts_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    ends_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    #: Comma-separated percentages, e.g. ``50,80,100``.
    thresholds: str = Field(default="50,80,100", sa_column=Column(String(64), nullable=False, server_default=""))
    #: Alert when the period-end forecast exceeds this percentage of the amount (0 = never).
    forecast_threshold: int = Field(default=100, sa_column=Column(Integer, nullable=False, server_default="100"))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class AlertEvent(SQLModel, table=True):
    """``alert_events``: an alert that was (or is being) sent; ``alert_key`` is unique."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ux_alert_events_key", "alert_key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    #: ``budget:<id>:<period start>:<threshold>``, ``forecast:...`` or ``anomaly:...``.
    alert_key: str = Field(sa_column=Column(String(255), nullable=False))
    #: ``threshold``, ``forecast``, ``anomaly`` or ``test``.
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    budget_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    period_start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    threshold: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    #: ``sending``, ``sent`` or ``failed`` (a failed alert is retried at the next evaluation).
    status: str = Field(sa_column=Column(String(16), nullable=False))
    title: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    link: str = Field(default="", sa_column=Column(String(1024), nullable=False, server_default=""))
    error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class TeamRule(SQLModel, table=True):
    """``team_rules``: one rule of one version of the rule list (first match wins)."""

    __tablename__ = "team_rules"
    __table_args__ = (Index("ix_team_rules_version", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(sa_column=Column(Integer, nullable=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    #: ``''`` matches every provider.
    provider: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))
    #: ``project``, ``workspace``, ``api_key``, ``monitor_token``, ``account`` or ``user``.
    match_field: str = Field(sa_column=Column(String(32), nullable=False))
    #: Exact value or a shell-style pattern (``proj_*``).
    pattern: str = Field(sa_column=Column(String(255), nullable=False))
    team: str = Field(sa_column=Column(String(255), nullable=False))
    cost_centre: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_by: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    note: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    #: False on the marker row of a version that has no rules (an emptied list).
    is_rule: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))


class FxRate(SQLModel, table=True):
    """``fx_rates``: how many ``quote`` units one ``base`` unit bought on ``day`` (UTC)."""

    __tablename__ = "fx_rates"
    __table_args__ = (Index("ux_fx_rates_day_pair", "day", "base", "quote", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    day: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    base: str = Field(sa_column=Column(String(3), nullable=False))
    quote: str = Field(sa_column=Column(String(3), nullable=False))
    rate: Decimal = Field(sa_column=Column(ScaledDecimal(RATE_SCALE), nullable=False))
    source: str = Field(default="manual", sa_column=Column(String(255), nullable=False, server_default="manual"))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


BUDGETS: Table = Budget.__table__  # type: ignore[attr-defined]
ALERT_EVENTS: Table = AlertEvent.__table__  # type: ignore[attr-defined]
TEAM_RULES: Table = TeamRule.__table__  # type: ignore[attr-defined]
FX_RATES: Table = FxRate.__table__  # type: ignore[attr-defined]
