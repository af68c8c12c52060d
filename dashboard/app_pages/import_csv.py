"""Import (finance, admin): upload billing CSVs, see the detected format and a dry run, then confirm."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import streamlit as st

from dashboard import actions, auth, queries
from importers.service import DRY_RUN, DUPLICATE, ImportResult


def render() -> None:
    """Draw the page."""
    account = auth.require("finance")
    st.title("Import billing CSV files")
    st.caption(
        "FOCUS (CSV or Parquet), Google Cloud billing, AWS CUR, Azure cost, Fireworks or generic-template CSV "
        "files (optionally gzipped); the format is detected from the header. Each file is imported whole or not "
        "at all, and the same file imported twice changes nothing (`llm-usage import FILE` does the same on the "
        "server). When a file bills days another source already bills, one source counts (cost API, then the "
        "native export, FOCUS, the generic template) and the page says which."
    )
    files = st.file_uploader(
        "Billing exports (.csv, .csv.gz or .parquet)",
        type=["csv", "gz", "parquet"],
        accept_multiple_files=True,
        key="import_files",
    )
    ready: dict[str, Any] = {}
    for upload in files or []:
        st.subheader(upload.name)
        try:
            result = actions.preview_upload(upload.getvalue(), upload.name, who=account.name)
        except Exception as exc:  # noqa: BLE001  (bad input is shown to the user, never a crash)
            st.error(f"Could not read {upload.name}: {actions.safe_message(exc)}")
            continue
        _preview(result)
        if result.status == DRY_RUN:
            ready[upload.name] = upload
    if ready and st.button(f"Import {len(ready)} file(s)", type="primary", key="confirm_import"):
        for name, upload in ready.items():
            try:
                result = actions.import_upload(upload.getvalue(), name, dry_run=False, who=account.name)
            except Exception as exc:  # noqa: BLE001
                st.error(f"{name}: {actions.safe_message(exc)}")
                continue
            (st.success if result.ok else st.error)(f"{result.message} (by {account.name})")
    _billing_sources(account.name)
    _history()


def preview_rows(result: ImportResult) -> list[dict[str, Any]]:
    """The dry run's totals per provider and model, money per basis kept apart (never summed)."""
    rows = []
    for (provider, model), t in sorted(result.totals.items()):
        row: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "records": t.records,
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "requests": t.requests,
        }
        for (basis, currency), amount in sorted(t.cost.items()):
            row[f"{basis} ({currency})"] = str(amount)
        if t.unpriced:
            row["unpriced records"] = t.unpriced
        rows.append(row)
    return rows


def _preview(result: ImportResult) -> None:
    if result.status == DUPLICATE:
        st.info(result.message)
        return
    period = (
        f"{result.period_start:%Y-%m-%d %H:%M} → {result.period_end:%Y-%m-%d %H:%M} UTC"
        if result.period_start and result.period_end
        else ""
    )
    st.json(
        {
            "format": result.importer,
            "rows read": result.rows_read,
            "usage records": result.records,
            "skipped (non-AI services)": result.skipped,
            "period": period,
        },
        expanded=True,
    )
    if result.issues:
        more = " (stopped after 50)" if len(result.issues) >= 50 else ""
        st.error(f"{len(result.issues)} problem(s){more}; nothing will be imported. Fix the file and upload it again:")
        st.dataframe(
            [{"line": i.line, "column": i.column, "value": i.value, "rule": i.rule} for i in result.issues],
            width="stretch",
        )
        return
    st.dataframe(preview_rows(result), hide_index=True, width="stretch")
    if result.duplicate_rows:
        st.warning(
            f"{result.duplicate_rows:,} row(s) repeat an earlier row of the file exactly and are summed into it "
            "(a file concatenated twice shows up here)."
        )
    for overlap in result.overlaps:
        st.warning(f"Billed twice: {overlap.describe()}", icon=":material/content_copy:")


def _billing_sources(who: str) -> None:
    """Overlaps of the last 90 days, and which billed source an admin chose per account."""
    st.subheader("When sources overlap")
    until = queries.as_of()
    found = queries.billing_overlaps(until - timedelta(days=90), until + timedelta(days=1))
    prefs = queries.billing_preferences()
    if not found and not prefs:
        st.caption("No provider account-day is billed by two sources in the last 90 days.")
        return
    for overlap in found:
        st.write(f"- {overlap.describe()}")
    choices = {(o.provider, o.account): [o.counted.label, *(s.label for s in o.others)] for o in found}
    if choices:
        with st.form("prefer_source"):
            target = st.selectbox(
                "Provider account", sorted(choices), format_func=lambda k: f"{k[0]} account {k[1] or '(none)'}"
            )
            source = st.selectbox("Source that counts", sorted({s for labels in choices.values() for s in labels}))
            if st.form_submit_button("Make it count"):
                actions.prefer_billing_source(target[0], target[1], source, who)
                st.rerun()
    for (provider, account_id), src in sorted(prefs.items()):
        left, right = st.columns([4, 1])
        left.write(f"{provider} account {account_id or '(none)'}: **{src.label}** counts (chosen by an admin)")
        if right.button("Back to default", key=f"clear_{provider}_{account_id}"):
            actions.clear_billing_preference(provider, account_id)
            st.rerun()


def _history() -> None:
    st.subheader("Imported files")
    files = queries.import_files_frame()
    if files.empty:
        st.caption("No file imported yet.")
    else:
        st.dataframe(files, hide_index=True, width="stretch")


render()
