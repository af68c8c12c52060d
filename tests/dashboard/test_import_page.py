"""The Import page against a stand-in for issue 4's importer API (the seam the page calls).

``importers.service.import_file(source, *, importer=None, dry_run=False, account=None)`` arrives
with another branch; this stand-in honours that signature with a tiny real CSV parser that writes
through the store, so the test checks what the page does with a dry run, errors and a confirm.
"""

import csv
import io
import sys
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from collector.schema import UsageRecord
from collector.store import upsert_records
from dashboard import queries
from tests.dashboard.conftest import app, texts


@dataclass
class ImportResult:
    importer: str
    rows: int
    period: str
    totals: dict
    errors: list = field(default_factory=list)


def _import_file(source, *, importer=None, dry_run=False, account=None):
    text = source.read().decode()
    records, errors = [], []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            day = datetime.fromisoformat(row["date"]).replace(tzinfo=UTC)
            records.append(
                UsageRecord(
                    provider=row["provider"], source="csv", kind="generic", bucket_start=day,
                    bucket_end=day + timedelta(days=1), account=account or "acct", model=row["model"],
                    cost=Decimal(row["cost"]), currency="USD", basis="billed",
                )
            )  # fmt: skip
        except (ValueError, KeyError) as exc:
            errors.append({"line": line, "error": str(exc)})
    total = sum((r.cost for r in records), Decimal(0))
    result = ImportResult("generic", len(records), "2026-11-14", {"USD": str(total)}, errors)
    if not dry_run and not errors:
        upsert_records(queries.engine(), records)
    return result


def _install(monkeypatch):
    module = types.ModuleType("importers.service")
    module.import_file = _import_file
    monkeypatch.setitem(sys.modules, "importers.service", module)


GOOD = b"date,provider,model,cost\n2026-11-14,mistral,mistral-large-latest,12.50\n"
BAD = b"date,provider,model,cost\n2026-11-14,mistral,mistral-large-latest,12.50\nnot-a-date,xai,grok-4,1\n"


def test_upload_dry_run_then_confirm(dashboard_db, monkeypatch):
    _install(monkeypatch)
    at = app("finance", "app_pages/import_csv.py")
    assert not at.exception, at.exception
    at.file_uploader(key="import_files").upload("mistral.csv", GOOD, "text/csv").run()
    assert not at.exception, at.exception
    preview = at.json[0].value
    assert '"rows": 1' in preview and '"12.50"' in preview
    at.button(key="confirm_import").click().run()
    assert "mistral.csv: imported 1 rows (by finance)." in texts(at)
    at.switch_page("app_pages/overview.py").run()
    assert {m.label: m.value for m in at.metric}["Month to date"] == "$156.75"  # 144.25 + 12.50


def test_a_file_with_errors_shows_line_numbers_and_cannot_be_confirmed(dashboard_db, monkeypatch):
    _install(monkeypatch)
    at = app("finance", "app_pages/import_csv.py")
    at.file_uploader(key="import_files").upload("bad.csv", BAD, "text/csv").run()
    assert "1 error(s)" in texts(at)
    errors = at.dataframe[0].value
    assert list(errors["line"]) == [3]
    assert not [b for b in at.button if b.key == "confirm_import"]
