"""Teams and chargeback: versioned rules that map usage to a team and cost centre.

A rule says "usage whose <field> matches <pattern> (for <provider>, or any) belongs to <team>,
cost centre <cc>". Fields:

* ``project`` and ``workspace``: the provider project (OpenAI project, Anthropic workspace, GCP
  project ...), both stored in the ``project`` column (provider-apis.md §1.3, §2.3);
* ``api_key``: the provider's API key id;
* ``monitor_token``: the proxy's caller attribution. The proxy never stores the token: its hourly
  rollup (:mod:`collector.proxy.rollup`) writes the token's ``team`` and ``project`` on rows of
  source ``proxy`` (and the salted key fingerprint as ``api_key_id``), so the pattern is matched
  against ``team/project`` of proxy rows only (``search/*``: every token of team search,
  ``*/ranker``: project ranker's tokens);
* ``account`` and ``user``.

Rules are tried in order and the first match wins. Patterns are exact values or shell-style
(``proj_search*``). Usage no rule matches keeps the ``team`` its source gave it (e.g. a proxy
monitor token created with ``--team``), and otherwise lands on the **unallocated** line, so the
lines always add up to the month's spend.

The chargeback splits the providers' numbers (sources ``api`` and ``csv``); the proxy's own
traffic (estimated, compared with the bills and never added to them: design rule 5) has its own
chargeback with ``source="proxy"``, where monitor-token rules apply; OpenTelemetry traffic likewise
with ``source="otel"`` (team and project come from the services' attribution attributes).

Saving rules never edits rows: it writes a new *version* holding the whole list, so a chargeback
names the version it used and an old month can be re-run with the rules of the time.

Amounts are exact; the CSV also shows cents, rounded by the largest-remainder method so that
the rounded lines add up exactly to the rounded total ("to the cent").
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal
from fnmatch import fnmatchcase

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, func, insert, select, true
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from collector.core import csvout
from collector.core.sqltypes import UTCDateTime, canonical_decimal
from collector.finance.forecast import month_bounds
from collector.query.report import Converter, Filters, report


#: Rule field -> report dimension it reads.
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


TEAM_RULES: Table = TeamRule.__table__  # type: ignore[attr-defined]


MATCH_FIELDS: dict[str, str] = {
    "project": "project",
    "workspace": "project",
    "api_key": "api_key",
    "monitor_token": "monitor_token",
    "account": "account",
    "user": "user",
}
UNALLOCATED = "unallocated"
#: What a chargeback splits: the providers' numbers, or the proxy's own (estimated) traffic.
CHARGEBACK_SOURCES = ("provider", "proxy", "otel")
RULE_COLUMNS = ("provider", "match_field", "pattern", "team", "cost_centre", "note")
CENT = Decimal("0.01")
_DIMS = ("provider", "account", "project", "api_key", "user", "team")


def monitor_token_value(dims: dict[str, str]) -> str:
    """``team/project`` the proxy rollup wrote from a monitor token, or '' (not proxy, no token)."""
    if dims.get("source") != "proxy":
        return ""
    team, project = dims.get("team", ""), dims.get("project", "")
    return f"{team}/{project}" if team or project else ""


class ChargebackError(ValueError):
    """A bad rule or rules file; the message names the rule (or line) and the accepted values."""


@dataclass(frozen=True)
class Rule:
    """One mapping rule (see the module docstring)."""

    match_field: str
    pattern: str
    team: str
    cost_centre: str = ""
    provider: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.match_field not in MATCH_FIELDS:
            raise ChargebackError(f"rule field {self.match_field!r} is not one of {', '.join(MATCH_FIELDS)}")
        if not self.pattern.strip():
            raise ChargebackError("a rule needs a pattern (an exact value or a shell pattern such as proj_*)")
        if not self.team.strip() or self.team.strip().lower() == UNALLOCATED:
            raise ChargebackError(f"a rule needs a team name other than {UNALLOCATED!r}")

    def matches(self, dims: dict[str, str]) -> bool:
        """True when this rule covers a group of usage with these dimension values."""
        if self.provider and dims.get("provider", "") != self.provider:
            return False
        if self.match_field == "monitor_token":
            value = monitor_token_value(dims)
        else:
            value = dims.get(MATCH_FIELDS[self.match_field], "")
        return bool(value) and fnmatchcase(value, self.pattern)


@dataclass(frozen=True)
class RuleSet:
    """One saved version of the rule list."""

    version: int
    rules: tuple[Rule, ...]
    created_at: datetime | None = None
    created_by: str = ""

    def assign(self, dims: dict[str, str]) -> tuple[str, str, str]:
        """``(team, cost centre, how)`` for a group of usage; ``how`` is ``rule N``, ``source`` or ``''``."""
        for i, rule in enumerate(self.rules, 1):
            if rule.matches(dims):
                return rule.team, rule.cost_centre, f"rule {i}"
        if dims.get("team"):
            return dims["team"], "", "source"
        return UNALLOCATED, "", ""


# -- storage -------------------------------------------------------------------------------------


def save_rules(engine: Engine, rules: Sequence[Rule], created_by: str = "", now: datetime | None = None) -> int:
    """Store ``rules`` as a new version (the whole list); returns the version number."""
    now = now or datetime.now(UTC)
    t = TEAM_RULES
    with engine.begin() as conn:
        version = (conn.execute(select(func.max(t.c.version))).scalar_one() or 0) + 1
        rows = [
            {
                "version": version,
                "position": i,
                "provider": r.provider,
                "match_field": r.match_field,
                "pattern": r.pattern,
                "team": r.team,
                "cost_centre": r.cost_centre,
                "note": r.note,
                "created_at": now,
                "created_by": created_by,
                "is_rule": True,
            }
            for i, r in enumerate(rules, 1)
        ]
        if not rows:  # an emptied list is a version too: one marker row
            rows = [
                {
                    "version": version,
                    "position": 0,
                    "provider": "",
                    "match_field": "",
                    "pattern": "",
                    "team": "",
                    "cost_centre": "",
                    "note": "(no rules)",
                    "created_at": now,
                    "created_by": created_by,
                    "is_rule": False,
                }
            ]
        conn.execute(insert(t), rows)
    return version


def load_rules(engine: Engine, version: int | None = None) -> RuleSet:
    """The newest rule list, or a given version; version 0 (no rules) before the first save.

    Raises:
        ChargebackError: an unknown version.
    """
    t = TEAM_RULES
    with engine.connect() as conn:
        if version is None:
            version = conn.execute(select(func.max(t.c.version))).scalar_one() or 0
        rows = conn.execute(select(t).where(t.c.version == version).order_by(t.c.position)).mappings().all()
    if not rows:
        if version == 0:
            return RuleSet(0, ())
        raise ChargebackError(f"no team rules version {version}")
    rules = tuple(
        Rule(r["match_field"], r["pattern"], r["team"], r["cost_centre"], r["provider"], r["note"])
        for r in rows
        if r["is_rule"]
    )
    return RuleSet(version, rules, rows[0]["created_at"], rows[0]["created_by"])


def rule_versions(engine: Engine) -> list[RuleSet]:
    """Every saved version, newest first."""
    t = TEAM_RULES
    with engine.connect() as conn:
        versions = conn.execute(select(t.c.version).distinct().order_by(t.c.version.desc())).scalars().all()
    return [load_rules(engine, v) for v in versions]


def rules_from_csv(text: str) -> list[Rule]:
    """Parse a rules file with columns ``match_field,pattern,team`` (+ ``provider,cost_centre,note``).

    Raises:
        ChargebackError: a missing column or a bad rule, naming its line.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("match_field", "pattern", "team") if c not in header]
    if missing:
        raise ChargebackError(f"rules file: missing column(s) {', '.join(missing)}; columns: {','.join(RULE_COLUMNS)}")
    reader.fieldnames = header
    out = []
    for line, row in enumerate(reader, start=2):
        try:
            out.append(Rule(**{c: csvout.unescape_cell((row.get(c) or "").strip()) for c in RULE_COLUMNS}))
        except ChargebackError as exc:
            raise ChargebackError(f"rules file line {line}: {exc}") from exc
    return out


def rules_to_csv(rules: Iterable[Rule]) -> str:
    """The rules as a CSV file :func:`rules_from_csv` reads back."""
    return csvout.to_csv(RULE_COLUMNS, ([getattr(r, c) for c in RULE_COLUMNS] for r in rules))


# -- chargeback ----------------------------------------------------------------------------------


@dataclass
class ChargebackLine:
    """One team's (or the unallocated) share of the month in one currency."""

    team: str
    cost_centre: str
    currency: str
    amount: Decimal
    cents: Decimal = Decimal(0)
    groups: int = 0
    by_provider: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class Chargeback:
    """A month's spend split by team; ``totals`` is the month's spend per currency."""

    month: date
    since: datetime
    until: datetime
    rules_version: int
    basis: str
    lines: list[ChargebackLine]
    totals: dict[str, Decimal]
    notes: list[str] = field(default_factory=list)
    source: str = "provider"

    def line_sum(self, currency: str) -> Decimal:
        """Exact sum of the lines of one currency (equals ``totals[currency]``)."""
        return sum((ln.amount for ln in self.lines if ln.currency == currency), Decimal(0))

    def cents_sum(self, currency: str) -> Decimal:
        """Sum of the rounded lines (equals the rounded total)."""
        return sum((ln.cents for ln in self.lines if ln.currency == currency), Decimal(0))


def allocate_cents(amounts: Sequence[Decimal], quantum: Decimal = CENT) -> list[Decimal]:
    """Round ``amounts`` to ``quantum`` so that they add up to their rounded total.

    Largest-remainder method: round every amount down (towards minus infinity, so credits work
    too), then give the missing units to the amounts that lost most. The floors add up to at most
    the floored total, so the number of units to hand out is never negative.
    """
    if not amounts:
        return []
    total = sum(amounts, Decimal(0)).quantize(quantum)
    floors = [a.quantize(quantum, rounding=ROUND_FLOOR) for a in amounts]
    units = int((total - sum(floors, Decimal(0))) / quantum)
    order = sorted(range(len(amounts)), key=lambda i: (amounts[i] - floors[i], -i), reverse=True)
    out = list(floors)
    for i in order[:units]:
        out[i] += quantum
    return out


def monthly_chargeback(
    engine: Engine,
    month: date,
    *,
    rules: RuleSet | None = None,
    basis: str = "preferred",
    source: str = "provider",
    currency: str | None = None,
    converter: Converter | None = None,
) -> Chargeback:
    """The month's spend (UTC) per team and cost centre, with an ``unallocated`` line.

    ``source="provider"`` splits the providers' numbers (the month's spend); ``"proxy"`` (or
    ``"otel"``) splits the proxy's (or OpenTelemetry's) estimated traffic instead (monitor-token
    rules apply to the proxy's). Unpriced usage carries no money and is counted in a note, never
    as $0. With ``currency`` (and the rate book's ``converter``) every day's spend is converted
    with that day's rate before it is split, so the lines still add up to the converted month;
    money of days without a rate stays in its currency, said once per currency in the notes.

    Raises:
        ChargebackError: an unknown ``source``.
    """
    if source not in CHARGEBACK_SOURCES:
        raise ChargebackError(f"source {source!r} is not one of {', '.join(CHARGEBACK_SOURCES)}")
    start, end = month_bounds(month)
    since = datetime(start.year, start.month, 1, tzinfo=UTC)
    until = datetime(end.year, end.month, 1, tzinfo=UTC)
    rules = rules if rules is not None else load_rules(engine)
    filters = Filters(since, until, sources=(source,)) if source != "provider" else Filters(since, until)
    result = report(engine, filters, by=_DIMS, basis=basis, currency=currency, converter=converter)
    lines: dict[tuple[str, str, str], ChargebackLine] = {}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    unpriced = 0
    for row in result.rows:
        if row.section != source:
            continue
        if row.cost is None:
            unpriced += row.basis == "unpriced"
            continue
        team, centre, _ = rules.assign({**row.dims, "source": "proxy"} if source == "proxy" else row.dims)
        line = lines.setdefault((team, centre, row.currency), ChargebackLine(team, centre, row.currency, Decimal(0)))
        line.amount += row.cost
        line.groups += 1
        provider = row.dims["provider"]
        line.by_provider[provider] = line.by_provider.get(provider, Decimal(0)) + row.cost
        totals[row.currency] += row.cost
    ordered = sorted(lines.values(), key=lambda ln: (ln.currency, ln.team == UNALLOCATED, -ln.amount, ln.team))
    for currency in totals:
        part = [ln for ln in ordered if ln.currency == currency]
        for ln, cents in zip(part, allocate_cents([ln.amount for ln in part]), strict=True):
            ln.cents = cents
    notes = [f"rules version {rules.version}" if rules.version else "no team rules saved yet"]
    if source != "provider":
        notes.append(f"{source} traffic (estimated): compared with the providers' bills, never added to them")
    if unpriced:
        notes.append(f"{unpriced} group(s) of unpriced usage carry no cost and are not charged")
    notes.extend(n for n in result.notes if "unpriced" not in n)
    return Chargeback(start, since, until, rules.version, basis, ordered, dict(totals), notes, source)


def chargeback_csv(cb: Chargeback) -> str:
    """The chargeback as CSV: one line per team and currency, then a total line per currency."""
    buf = io.StringIO()
    writer = csvout.writer(buf)
    writer.writerow(["month", "team", "cost_centre", "currency", "amount", "amount_exact", "rules_version", "basis"])
    month = cb.month.strftime("%Y-%m")
    for ln in cb.lines:
        writer.writerow(
            [
                month,
                ln.team,
                ln.cost_centre,
                ln.currency,
                f"{ln.cents:.2f}",
                f"{canonical_decimal(ln.amount):f}",
                cb.rules_version,
                cb.basis,
            ]
        )
    for currency, total in sorted(cb.totals.items()):
        writer.writerow(
            [
                month,
                "TOTAL",
                "",
                currency,
                f"{total.quantize(CENT):.2f}",
                f"{canonical_decimal(total):f}",
                cb.rules_version,
                cb.basis,
            ]
        )
    return buf.getvalue()


def rule_dimensions(rules: RuleSet) -> tuple[str, ...]:
    """The report dimensions :meth:`RuleSet.assign` reads for these rules, in ``_DIMS`` order."""
    wanted = {"provider", "team"}
    for rule in rules.rules:
        field_ = MATCH_FIELDS[rule.match_field]
        wanted |= {"team", "project"} if field_ == "monitor_token" else {field_}
    return tuple(d for d in _DIMS if d in wanted)


def team_daily_spend(
    engine: Engine, team: str, since: datetime, until: datetime, *, basis: str = "preferred"
) -> dict[tuple[date, str], Decimal]:
    """One team's spend per (UTC day, currency) under the newest rules (for team budgets).

    Grouped only by what the rules look at (with the source's own team), not by every
    dimension: a day then has a handful of groups instead of one per API key and user, and
    the sums are the same because every row of a group is assigned the same team.
    """
    rules = load_rules(engine)
    result = report(engine, Filters(since, until), by=rule_dimensions(rules), grain="day", basis=basis)
    out: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for row in result.rows:
        if row.cost is None or row.period is None or row.section != "provider":
            continue
        if rules.assign(row.dims)[0] == team:
            out[(row.period.date(), row.currency)] += row.cost
    return dict(out)
