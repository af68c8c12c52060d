"""``llm-usage import`` end to end through typer, on the configured (SQLite) database."""

import shutil

from typer.testing import CliRunner

from collector.app import app
from collector.db.migrate import open_database
from tests.conftest import create_database
from tests.importers.conftest import FIXTURES, import_file_rows, usage_count

runner = CliRunner()


def test_import_several_files_then_again(tmp_path):
    create_database()
    files = [str(FIXTURES / n) for n in ("focus_ai.csv", "generic.csv")]
    result = runner.invoke(app, ["import", *files])
    assert result.exit_code == 0, result.output
    assert "focus_ai.csv: imported as import #1" in result.output
    assert "generic.csv: imported as import #2" in result.output
    assert "google" in result.output and "gemini-2.0-flash" in result.output
    engine = open_database()
    assert usage_count(engine) == 10
    again = runner.invoke(app, ["import", files[1]])
    assert again.exit_code == 0 and "already imported as import #2" in again.output
    assert usage_count(engine) == 10


def test_dry_run_account_and_importer_options():
    create_database()
    result = runner.invoke(
        app, ["import", "--dry-run", "--importer", "aws_cur", "--account", "fin", str(FIXTURES / "aws_cur.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "dry run, nothing written" in result.output and "6 usage records" in result.output
    assert usage_count(open_database()) == 0


def test_all_services_option_keeps_non_ai_rows_and_force_reimports():
    create_database()
    path = str(FIXTURES / "gcp_billing.csv")
    assert runner.invoke(app, ["import", path]).exit_code == 0
    assert usage_count(open_database()) == 4
    skipped = runner.invoke(app, ["import", "--all-services", path])
    assert "already imported" in skipped.output and usage_count(open_database()) == 4
    forced = runner.invoke(app, ["import", "--all-services", "--force", path])
    assert forced.exit_code == 0, forced.output
    assert usage_count(open_database()) == 5  # the 4 AI rows upserted again, plus Compute Engine


def test_a_bad_file_exits_non_zero_naming_line_and_column(tmp_path):
    create_database()
    bad = tmp_path / "bad.csv"
    shutil.copy(FIXTURES / "generic.csv", bad)
    bad.write_text(bad.read_text().replace("420", "4x0"))
    result = runner.invoke(app, ["import", str(FIXTURES / "fireworks.csv"), str(bad), str(tmp_path / "missing.csv")])
    assert result.exit_code == 1
    assert "fireworks.csv: imported" in result.output
    assert "bad.csv: refused, nothing imported" in result.output
    assert "bad.csv:4: column 'requests': value '4x0': not a number" in result.output
    assert "missing.csv: no such file" in result.output
    engine = open_database()
    assert [f["status"] for f in import_file_rows(engine)] == ["imported", "failed"]
    assert usage_count(engine) == 2
