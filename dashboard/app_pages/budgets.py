"""Budgets: status and forecast per budget, anomalies, chargeback, alerts, exports and FX rates.

Everyone with the viewer role reads; admins also add, change and remove budgets, save a new
version of the team rules and enter exchange rates. Alert links land here:
``?budget=<id>&period=<YYYY-MM-DD>`` opens that budget, ``?anomaly=<scope>&day=<YYYY-MM-DD>``
the anomalies view on that day. ``?view=`` names the view (Budgets, Anomalies, Chargeback, Alerts,
Export, Exchange rates); only that view is computed, and its heavy reads are cached until the data
changes (:mod:`dashboard.queries`, "cached until the data changes").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import streamlit as st

from collector.auth.users import role_allows
from collector.core.settings import get_settings
from collector.core.windows import floor_day
from collector.finance import alerts, budgets, chargeback, fx
from collector.finance.anomaly import METHOD as ANOMALY_METHOD
from collector.finance.anomaly import Anomaly
from collector.finance.forecast import METHOD as FORECAST_METHOD
from dashboard import actions, auth, queries

DAY = timedelta(days=1)
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _month_options(today: date, count: int = 12) -> list[date]:
    out = []
    first = today.replace(day=1)
    for _ in range(count):
        out.append(first)
        first = (first - DAY).replace(day=1)
    return out


def _forecast_table(now: datetime) -> None:
    """Month-end forecast of all spend and of each provider with spend this month (USD)."""
    rows = []
    for label, status in queries.forecast_rows(floor_day(now)):
        if label != "all spend" and not status.spent:
            continue
        fc = status.forecast
        rows.append(
            {
                "scope": label,
                "spent so far": f"{status.spent:,.2f}",
                "forecast": f"{fc.projected:,.2f}",
                f"{round(fc.confidence * 100)}% interval": f"{fc.low:,.2f} .. {fc.high:,.2f}",
            }
        )
    st.subheader("This month's forecast (USD)")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _budget_tab(is_admin: bool, now: datetime) -> None:
    _forecast_table(now)
    st.subheader("Budgets")
    chosen = st.query_params.get("budget")
    rows = [(b, queries.budget_view(b, floor_day(now)) if b.active else None) for b in queries.budget_list()]
    if not rows:
        st.info("No budgets yet." + (" Add one below." if is_admin else " An admin can add them here."))
    unconverted: list[str] = []
    for b, status in rows:
        per = "month" if b.period == "month" else f"{b.starts_at:%Y-%m-%d} .. {(b.ends_at or NEVER) - DAY:%Y-%m-%d}"
        title = f"{b.name} · {b.scope_label} · {_money(b.amount, b.currency)} per {per}"
        if status is not None:
            title += f" · {status.percent:.0f}% used"
        with st.expander(title, expanded=chosen == str(b.id)):
            if not b.active:
                st.caption("Paused: no alerts are sent.")
            elif status is None:
                st.caption("Outside its custom period.")
            else:
                _status(b, status)
                unconverted += [f"{b.name}: {n}" for n in status.shown_notes]
            if is_admin:
                _edit_form(b)
    if unconverted:  # one note for the whole view, naming the days, not one per day or budget
        st.caption("Not in the display currency (no exchange rate for those days): " + "; ".join(unconverted) + ".")
    if is_admin:
        _add_form()


def _status(b: budgets.Budget, status: budgets.BudgetStatus) -> None:
    st.progress(min(float(status.percent) / 100, 1.0), text=f"{status.percent:.1f}% of the amount")
    cols = st.columns(3)
    cols[0].metric("Spent this period", _money(status.spent, b.currency))
    cols[1].metric("Forecast at period end", _money(status.forecast.projected, b.currency))
    cols[2].metric("Amount", _money(b.amount, b.currency))
    st.caption(
        f"Period {status.period_start:%Y-%m-%d} .. {(status.period_end - DAY):%Y-%m-%d} (UTC). "
        f"{round(status.forecast.confidence * 100)}% interval "
        f"{_money(status.forecast.low, b.currency)} .. {_money(status.forecast.high, b.currency)}; "
        f"method: {status.forecast.method}. Thresholds {', '.join(f'{t}%' for t in b.thresholds)}"
        + (f"; reached: {', '.join(f'{t}%' for t in status.crossed)}" if status.crossed else "")
        + "."
    )
    if status.shown is not None:
        # Each day converted at its own rate, so this is the same figure every view shows.
        st.caption(
            f"In the display currency: {_money(status.spent, b.currency)} = "
            f"{_money(status.shown, status.shown_currency)} (each day at its own rate)"
            + (" where a rate exists" if status.shown_notes else "")
        )
    for note in status.notes:
        st.warning(note)


def _edit_form(b: budgets.Budget) -> None:
    with st.form(f"edit_{b.id}"):
        amount = st.text_input("Amount", value=f"{b.amount:f}", key=f"amount_{b.id}")
        thresholds = st.text_input("Thresholds (%)", value=",".join(map(str, b.thresholds)), key=f"thr_{b.id}")
        forecast = st.number_input(
            "Forecast alert at (% of amount, 0 = off)", 0, 1000, b.forecast_threshold, key=f"fc_{b.id}"
        )
        active = st.checkbox("Active", value=b.active, key=f"active_{b.id}")
        save, remove = st.columns(2)
        if save.form_submit_button("Save"):
            try:
                actions.update_budget(
                    b.id,
                    amount=amount,
                    thresholds=thresholds,
                    forecast_threshold=int(forecast),
                    active=active,
                )
            except budgets.BudgetError as exc:
                st.error(str(exc))
            else:
                st.success("Saved.")
                st.rerun()
        if remove.form_submit_button("Delete"):
            actions.delete_budget(b.id)
            st.rerun()
    _enforce_controls(b)


def _enforce_controls(b: budgets.Budget) -> None:
    """The proxy cap: on or off, and an admin's lift until the period ends (``budgets enforce/lift``)."""
    lifted = b.lifted_until is not None and b.lifted_until > queries.as_of()
    if b.enforce:
        st.caption(
            f"Enforced by the proxy: lifted until {b.lifted_until:%Y-%m-%d %H:%M} UTC."
            if lifted and b.lifted_until is not None
            else "Enforced by the proxy: calls with a monitor token in this scope are refused once it is spent."
        )
    on, lift = st.columns(2)
    label = "Stop enforcing" if b.enforce else "Enforce with the proxy"
    if on.button(label, key=f"enforce_{b.id}"):
        try:
            actions.set_budget_enforce(b.id, not b.enforce)
        except budgets.BudgetError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    if b.enforce and not lifted and lift.button("Lift until the period ends", key=f"lift_{b.id}"):
        try:
            until = actions.lift_budget(b.id)
        except budgets.BudgetError as exc:
            st.error(str(exc))
        else:
            st.success(f"Lifted until {until:%Y-%m-%d %H:%M} UTC.")


def _add_form() -> None:
    st.subheader("Add a budget")
    with st.form("add_budget"):
        name = st.text_input("Name", key="new_name")
        scope = st.selectbox("Scope", budgets.SCOPES, key="new_scope")
        value = st.text_input("Provider / account / project / API key id / team", key="new_value")
        amount = st.text_input("Amount per month", key="new_amount")
        currency = st.text_input("Currency", value="USD", key="new_currency")
        thresholds = st.text_input("Thresholds (%)", value=get_settings().budget_thresholds, key="new_thresholds")
        forecast = st.number_input("Forecast alert at (% of amount, 0 = off)", 0, 1000, 100, key="new_forecast")
        allow_unknown = st.checkbox(
            "Allow a scope value not seen in the data yet",
            key="new_allow_unknown",
            help="Like `llm-usage budgets add --allow-unknown`: for a project or key that has not spent yet. "
            "Otherwise an unknown value is refused with the known ones listed (a typo could never trip).",
        )
        enforce = st.checkbox(
            "Enforce with the proxy",
            key="new_enforce",
            help="Like `llm-usage budgets add --enforce`: once the period's spend reaches the amount, the proxy "
            "refuses calls whose monitor token is in this scope (403 naming the budget). Not for account budgets.",
        )
        custom = st.checkbox("Custom period instead of every month", key="new_custom")
        first, last = st.columns(2)
        today = queries.as_of().date()
        start = first.date_input("First day (UTC)", value=today, key="new_start")
        end = last.date_input("Last day (UTC)", value=today + DAY * 13, key="new_end")
        if st.form_submit_button("Add budget"):
            try:
                actions.create_budget(
                    name=name,
                    scope=scope,
                    scope_value=value,
                    amount=amount,
                    currency=currency,
                    thresholds=thresholds,
                    forecast_threshold=int(forecast),
                    period="custom" if custom else "month",
                    starts_at=_midnight(start) if custom else None,
                    ends_at=_midnight(end) + DAY if custom else None,
                    allow_unknown=allow_unknown,
                    enforce=enforce,
                )
            except budgets.BudgetError as exc:
                st.error(str(exc))
            else:
                st.success(f"Budget {name!r} added.")
                st.rerun()


def _asked_day() -> datetime | None:
    """The day after ``?day=YYYY-MM-DD`` (a link from an alert), or None; anything else is ignored."""
    asked = st.query_params.get("day")
    if not asked:
        return None
    try:
        day = date.fromisoformat(asked)
    except ValueError:
        st.warning("Ignored the link's day: it is not a date (YYYY-MM-DD).")
        return None
    return _midnight(day) + DAY


def _anomaly_tab(now: datetime) -> None:
    until = _asked_day() or floor_day(now)
    since = until - DAY * 30
    found = queries.anomaly_scan(since, until)
    st.caption(
        f"{since:%Y-%m-%d} .. {(until - DAY):%Y-%m-%d} (UTC), scopes {', '.join(found.scopes)}. {ANOMALY_METHOD}."
    )
    if found.notices:
        # A scope with too little history is told once as new spend, never as daily anomalies.
        st.subheader("New spend")
        st.caption("First spend of a scope: there is no history to compare it with yet.")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "day": n.at.strftime("%Y-%m-%d"),
                        "scope": n.label,
                        "spent": f"{n.amount:,.2f}",
                        "currency": n.currency,
                    }
                    for n in reversed(found.notices)
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    st.subheader("Anomalies")
    if not found.anomalies:
        st.info("No anomalies in these 30 days.")
        return
    listed = list(reversed(found.anomalies))
    table = pd.DataFrame(
        [
            {
                "day": a.at.strftime("%Y-%m-%d"),
                "scope": a.label,
                "spent": f"{a.amount:,.2f}",
                "expected": f"{a.expected:,.2f}",
                "currency": a.currency,
                "robust z": f"{a.score:.1f}",
            }
            for a in listed
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    _drivers(listed)


def _drivers(listed: list[Anomaly]) -> None:
    """What drove the anomaly a person picks (three reads each, so only on request)."""
    asked = st.query_params.get("anomaly")
    labels = [f"{a.at:%Y-%m-%d} {a.label}" for a in listed]
    default = next((i for i, a in enumerate(listed) if a.label == asked), 0)
    picked = st.selectbox("What drove it", range(len(listed)), index=default, format_func=labels.__getitem__)
    a = listed[picked]
    drivers = queries.anomaly_drivers(a)
    if not drivers:
        st.caption("No model, project or API key grew above its own baseline on that day.")
        return
    st.caption(
        f"{a.label} on {a.at:%Y-%m-%d}, driven by "
        + ", ".join(f"{d.dimension}={d.value} (+{d.increase:,.2f} {a.currency})" for d in drivers)
    )


def _chargeback_tab(is_admin: bool, now: datetime, account_name: str) -> None:
    month = st.selectbox("Month (UTC)", _month_options(now.date()), format_func=lambda d: d.strftime("%Y-%m"))
    rules = queries.team_rules()
    cb = queries.chargeback_month(month)
    if not cb.lines:
        st.info("No spend in this month.")
    else:
        table = pd.DataFrame(
            [
                {"team": ln.team, "cost centre": ln.cost_centre, "amount": f"{ln.cents:,.2f}", "currency": ln.currency}
                for ln in cb.lines
            ]
            + [
                {"team": "TOTAL", "cost centre": "", "amount": f"{total:,.2f}", "currency": cur}
                for cur, total in sorted(cb.totals.items())
            ]
        )
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button(
            "Download chargeback CSV",
            chargeback.chargeback_csv(cb),
            file_name=f"chargeback-{month:%Y-%m}.csv",
            mime="text/csv",
        )
    for note in cb.notes:
        st.caption(note)
    st.subheader("Team rules")
    st.caption(
        "First match wins. Fields: " + ", ".join(chargeback.MATCH_FIELDS) + ". Patterns may use * and ?. "
        "Usage no rule matches keeps the team its source gave it, otherwise it is unallocated."
    )
    frame = pd.DataFrame(
        [{c: getattr(r, c) for c in chargeback.RULE_COLUMNS} for r in rules.rules], columns=chargeback.RULE_COLUMNS
    )
    if is_admin:
        edited = st.data_editor(frame, num_rows="dynamic", width="stretch", key="rules_editor")
        if st.button("Save as a new version", key="save_rules"):
            try:
                version = actions.save_team_rules(edited.to_dict("records"), created_by=account_name)
            except chargeback.ChargebackError as exc:
                st.error(str(exc))
            else:
                st.success(f"Saved as version {version}.")
                st.rerun()
    else:
        st.dataframe(frame, hide_index=True, width="stretch")
    history = queries.rule_versions()
    if history:
        st.caption(
            "Versions: "
            + "; ".join(
                f"{h.version} ({len(h.rules)} rules, {h.created_at:%Y-%m-%d %H:%M} {h.created_by})".strip()
                for h in history
            )
        )


def _alerts_tab() -> None:
    rows = queries.recent_alerts(100)
    urls = alerts.parse_urls(get_settings())
    st.caption(f"Channels: {alerts.describe_urls(urls)}. Each alert is sent once per threshold per period.")
    if not rows:
        st.info("No alerts yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "when (UTC)": f"{a.created_at:%Y-%m-%d %H:%M}",
                    "status": a.status,
                    "alert": a.title,
                    "error": a.error,
                }
                for a in rows
            ]
        ),
        hide_index=True,
        width="stretch",
    )


EXPORT_KINDS = {
    "FOCUS 1.2 CSV": ("focus", "csv", "text/csv"),
    "FOCUS 1.2 Parquet": ("parquet", "parquet", "application/vnd.apache.parquet"),
    "Usage rows CSV": ("csv", "csv", "text/csv"),
}


def _export_tab(now: datetime) -> None:
    month = st.selectbox(
        "Month (UTC)", _month_options(now.date()), format_func=lambda d: d.strftime("%Y-%m"), key="export_month"
    )
    kind = st.radio("Format", list(EXPORT_KINDS), horizontal=True, key="export_kind")
    st.caption(
        "FOCUS 1.2 columns plus x_ columns for tokens; BilledCost is the preferred basis (billed where a billed "
        "source covers the day, else the estimate). Usage rows: every stored field. "
        "CLI: `llm-usage export --format focus|csv|parquet --from DATE --to DATE`."
    )
    if st.button("Prepare export", key="prepare_export"):
        fmt, suffix, mime = EXPORT_KINDS[kind]
        since = datetime(month.year, month.month, 1, tzinfo=UTC)
        until = (since + DAY * 32).replace(day=1)
        data, rows = queries.export_file(fmt, since, until)
        name = f"{'usage' if fmt == 'csv' else 'focus'}-{month:%Y-%m}.{suffix}"
        st.session_state["prepared_export"] = (name, data, rows, mime)
    prepared = st.session_state.get("prepared_export")
    if prepared:
        name, data, rows, mime = prepared
        st.download_button(f"Download {name} ({rows:,} rows)", data, file_name=name, mime=mime)


def _fx_tab(is_admin: bool) -> None:
    target = get_settings().display_currency or "(billing currency)"
    st.caption(f"Display currency: {target} (LLM_USAGE_DISPLAY_CURRENCY). Costs stay in their billing currency.")
    rates = queries.fx_rates()
    if rates:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "day": r.day.isoformat(),
                        "1 base": r.base,
                        "=": f"{r.rate:f}",
                        "quote": r.quote,
                        "source": r.source,
                    }
                    for r in reversed(rates)
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    else:
        st.info("No exchange rates yet.")
    if is_admin:
        upload = st.file_uploader("Import rates (CSV: date,base,quote,rate)", type=["csv"], key="fx_upload")
        if upload is not None and st.button("Import rates", key="fx_import"):
            try:
                new, replaced = actions.import_fx_rates(upload.getvalue(), upload.name)
            except fx.FxError as exc:
                st.error(str(exc))
            else:
                st.success(f"Imported {new} new rate(s), replaced {replaced}.")


#: The page's views; only the chosen one is computed and drawn (``st.tabs`` would run them all).
VIEWS = ("Budgets", "Anomalies", "Chargeback", "Alerts", "Export", "Exchange rates")


def _view() -> str:
    """The view in ``?view=``; an alert's ``?anomaly=`` link opens Anomalies."""
    default = "Anomalies" if st.query_params.get("anomaly") else VIEWS[0]
    chosen = st.segmented_control(
        "View", VIEWS, default=default, key="view", bind="query-params", required=True, label_visibility="collapsed"
    )
    return chosen or default


def render() -> None:
    """Draw the page."""
    account = auth.require("viewer")
    is_admin = role_allows(account.role, "admin")
    st.title("Budgets")
    st.caption(f"Forecasts: {FORECAST_METHOD}.")
    now = queries.as_of()
    view = _view()
    if view == "Budgets":
        _budget_tab(is_admin, now)
    elif view == "Anomalies":
        _anomaly_tab(now)
    elif view == "Chargeback":
        _chargeback_tab(is_admin, now, account.name)
    elif view == "Alerts":
        _alerts_tab()
    elif view == "Export":
        _export_tab(now)
    else:
        _fx_tab(is_admin)


render()
