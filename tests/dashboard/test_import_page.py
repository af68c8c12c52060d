"""The Import page with the real importer (``importers.service.import_file``, generic template)."""

import json

from sqlalchemy import select

from dashboard import queries
from importers.log import IMPORT_FILES
from tests.dashboard.conftest import app, texts

GOOD = b"date,provider,model,cost\n2026-11-14,mistral,mistral-large-latest,12.50\n"
BAD = b"date,provider,model,cost\n2026-11-14,mistral,mistral-large-latest,12.50\nnot-a-date,xai,grok-4,1\n"


def _files() -> list[dict]:
    with queries.engine().connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(IMPORT_FILES).order_by(IMPORT_FILES.c.id))]


def test_upload_dry_run_then_confirm(dashboard_db):
    at = app("finance", "app_pages/import_csv.py")
    assert not at.exception, at.exception
    at.file_uploader(key="import_files").upload("mistral.csv", GOOD, "text/csv").run()
    assert not at.exception, at.exception
    preview = json.loads(at.json[0].value)
    assert (preview["format"], preview["rows read"], preview["usage records"]) == ("generic", 1, 1)
    assert preview["period"] == "2026-11-14 00:00 → 2026-11-15 00:00 UTC"
    totals = at.dataframe[0].value.set_index("model")
    assert totals.loc["mistral-large", "billed (USD)"] == "12.50"  # grouped under the price table's id
    assert _files() == []  # a dry run writes nothing
    at.button(key="confirm_import").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "mistral.csv: imported as import #1" in texts(at)
    (row,) = _files()
    assert (row["name"], row["status"], row["rows"], row["imported_by"]) == ("mistral.csv", "imported", 1, "finance")
    at.switch_page("app_pages/overview.py").run()
    assert {m.label: m.value for m in at.metric}["Month to date"] == "$156.75"  # 144.25 + 12.50
    # The same file again is recognised before anything is written.
    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("mistral.csv", GOOD, "text/csv").run()
    assert "already imported as import #1" in texts(at)
    assert not [b for b in at.button if b.key == "confirm_import"]
    history = at.dataframe[-1].value
    assert list(history["name"]) == ["mistral.csv"]


def test_a_file_with_errors_shows_line_numbers_and_cannot_be_confirmed(dashboard_db):
    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("bad.csv", BAD, "text/csv").run()
    assert not at.exception, at.exception
    assert "1 problem(s); nothing will be imported" in texts(at)
    errors = at.dataframe[0].value
    assert list(errors["line"]) == [3]
    assert list(errors["value"]) == ["not-a-date"] and list(errors["column"]) == ["date"]
    assert not [b for b in at.button if b.key == "confirm_import"]
    assert _files() == []


FOCUS = (
    b"BilledCost,BillingAccountId,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ProviderName,"
    b"ServiceCategory,ServiceName\n"
    b"12.75,,USD,2026-11-14T00:00:00Z,2026-11-15T00:00:00Z,Mistral AI,AI and Machine Learning,La Plateforme\n"
)


def test_a_file_billing_days_another_source_bills_says_which_counts_and_lets_finance_choose(dashboard_db):
    from collector.query.billing import BillingSource, preferences

    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("mistral.csv", GOOD, "text/csv").run()
    at.button(key="confirm_import").click().run()
    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("focus.csv", FOCUS, "text/csv").run()
    assert not at.exception, at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "Billed twice: mistral account (none) 2026-11-14" in warning  # said in the dry run
    assert "csv:focus counts (a FOCUS export)" in warning and "csv:generic kept but not counted" in warning
    at.button(key="confirm_import").click().run()
    assert not at.exception, at.exception
    assert "mistral account (none) 2026-11-14: billed by csv:focus 12.75 USD and csv:generic 12.50 USD" in texts(at)
    at.selectbox[1].set_value("csv:generic")
    next(b for b in at.button if b.label == "Make it count").click().run()
    assert not at.exception, at.exception
    assert preferences(queries.engine()) == {("mistral", ""): BillingSource("csv", "generic")}
    at.switch_page("app_pages/overview.py").run()
    assert {m.label: m.value for m in at.metric}["Month to date"] == "$156.75"  # 144.25 + the generic 12.50
    at.switch_page("app_pages/import_csv.py").run()
    at.button(key="clear_mistral_").click().run()
    assert preferences(queries.engine()) == {}
    at.switch_page("app_pages/overview.py").run()
    assert {m.label: m.value for m in at.metric}["Month to date"] == "$157.00"  # FOCUS counts again: 144.25 + 12.75


def test_the_dry_run_runs_once_per_upload_not_on_every_rerun(dashboard_db, monkeypatch):
    from dashboard import actions

    calls: list[bool] = []
    real = actions.import_file

    def counting(*args, **kwargs):
        calls.append(kwargs["dry_run"])
        return real(*args, **kwargs)

    monkeypatch.setattr(actions, "import_file", counting)
    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("mistral.csv", GOOD, "text/csv").run()
    for _ in range(3):
        at.run()
    assert not at.exception, at.exception
    assert calls == [True]  # one dry run for four runs of the page
    assert json.loads(at.json[0].value)["rows read"] == 1
    at.button(key="confirm_import").click().run()
    assert calls == [True, False]
    # After a real import the same bytes are dry-run afresh (and now recognised as a duplicate).
    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("mistral.csv", GOOD, "text/csv").run()
    assert calls == [True, False, True] and "already imported as import #1" in texts(at)
