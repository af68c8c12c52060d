"""Import (finance, admin): upload billing CSVs, see the detected format and a dry run, then confirm."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import actions, auth, queries

PREVIEW_KEYS = ("importer", "format", "rows", "period", "period_start", "period_end", "providers", "totals")


def render() -> None:
    """Draw the page."""
    account = auth.require("finance")
    st.title("Import billing CSV files")
    import_file = actions.import_file_function()
    if import_file is None:
        st.info(
            "CSV import is not installed in this build. When it is, upload FOCUS, Google Cloud, AWS CUR, Azure, "
            "Fireworks or generic-template CSV files here (or run `llm-usage import FILE` on the server).",
            icon=":material/upload_file:",
        )
        _history()
        return
    files = st.file_uploader(
        "CSV exports (.csv or .csv.gz)", type=["csv", "gz"], accept_multiple_files=True, key="import_files"
    )
    previews: dict[str, Any] = {}
    for upload in files or []:
        st.subheader(upload.name)
        try:
            upload.seek(0)
            result = import_file(upload, dry_run=True)
        except Exception as exc:  # noqa: BLE001  (bad input is shown to the user, never a crash)
            st.error(f"Could not read {upload.name}: {actions.safe_message(exc)}")
            continue
        info = actions.describe(result)
        _preview(info)
        if not info.get("errors"):
            previews[upload.name] = upload
    if previews and st.button(f"Import {len(previews)} file(s)", type="primary", key="confirm_import"):
        for name, upload in previews.items():
            try:
                upload.seek(0)
                result = import_file(upload, dry_run=False, account=None)
            except Exception as exc:  # noqa: BLE001
                st.error(f"{name}: {actions.safe_message(exc)}")
                continue
            info = actions.describe(result)
            st.success(f"{name}: imported {info.get('rows', '?')} rows (by {account.name}).")
        queries.clear_caches()
    _history()


def _preview(info: dict[str, Any]) -> None:
    shown = {k: info[k] for k in PREVIEW_KEYS if k in info}
    st.json(shown or info, expanded=True)
    errors = info.get("errors") or []
    if errors:
        st.error(f"{len(errors)} error(s); fix the file and upload it again:")
        st.dataframe([e if isinstance(e, dict) else {"error": str(e)} for e in errors], width="stretch")


def _history() -> None:
    st.subheader("Imported files")
    files = queries.import_files_frame()
    if files is None or files.empty:
        st.caption("No file imported yet.")
    else:
        st.dataframe(files, hide_index=True, width="stretch")


render()
