"""Every dashboard page and Budgets view in a real browser, at 10M usage rows and on an empty database.

Builds (once; cached under ``tests/artifacts/``) a SQLite database of ``--rows`` synthetic usage
rows (default 10,000,000: a year at ~1,140 rows an hour), with the demo's budgets (one on all
spend, one on a team) and team rules, then serves it with ``llm-usage run``'s Streamlit command
and drives Debian's headless Chromium through selenium, as ``tests/dashboard/test_browser.py``
does. Signed in as an admin, it opens each page from the sidebar and each Budgets view from its
selector, and prints the seconds until the page settled (the script run ended and the title is
shown, read from Streamlit's ``data-test-script-state``; polled every 20 ms):

* ``cold``: the first visit in a fresh server process (every Streamlit cache empty; the Budgets
  views are visited first, while the background warmer started at sign-in may still be running);
* ``warm``: the second visit, as the next person sees it;
* ``empty``: the cold visit on a migrated empty database in the same run (the baseline: Streamlit,
  the browser and the page's own overhead without data).

Demo mode pins "today" to the data's last day (``LLM_USAGE_DEMO``), so month-to-date, forecasts
and anomalies have data. Run with ``make bench BENCH=dashboard_pages`` or
``python -m tests.bench.bench_dashboard_pages --rows 1000000``; the target is every page and view
under one second cold at 10M rows.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from collector.app import dashboard_command
from collector.core.settings import Settings
from collector.db.migrate import open_database
from collector.demo.synthetic import GeneratorConfig, generate, rows_per_hour_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
END = datetime(2026, 11, 1, tzinfo=UTC)
ADMIN, PASSWORD = "bench-admin", "bench password 1234"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
#: (label, sidebar entry, title that shows when it settled, Budgets view to click or None)
BUDGET_VIEWS = ("Budgets", "Anomalies", "Chargeback", "Alerts", "Export", "Exchange rates")
PAGES = ("Overview", "Explore", "Tokens", "Reconciliation", "Proxy", "Import", "Data & health", "Connections", "Users")
TITLES = {"Import": "Import billing CSV files"}


def ensure_db(rows: int) -> Path:
    """Build the database once per row count; later runs reuse the file."""
    path = ARTIFACTS / f"bench_dashboard_pages_{rows}.db"
    done = path.with_suffix(".done")
    if path.exists() and done.exists():
        return path
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob(path.name + "*"):
        stale.unlink()
    started = time.perf_counter()
    engine = open_database(url=f"sqlite:///{path}")
    from collector.core.store import upsert_records

    cfg = GeneratorConfig(days=365, rows_per_hour=rows_per_hour_for(rows), end=END)
    result = upsert_records(engine, generate(cfg, limit=rows))
    _extras(engine, with_budgets=True)
    engine.dispose()
    done.write_text(f"{result.records:,} rows built in {time.perf_counter() - started:.0f} s\n")
    return path


def _extras(engine, *, with_budgets: bool) -> None:  # type: ignore[no-untyped-def]
    """The admin account; with data, the demo's team rules and two budgets (all spend, one team)."""
    from collector.auth.users import add_user, get_user
    from collector.demo.seed import _rules
    from collector.finance import budgets, chargeback

    if get_user(engine, ADMIN) is None:
        add_user(engine, ADMIN, "admin", PASSWORD)
    if with_budgets:
        chargeback.save_rules(engine, _rules(), created_by="bench")
        budgets.create_budget(engine, name="All spend", scope="all", amount="100000")
        budgets.create_budget(
            engine, name="Support team", scope="team", scope_value="support", amount="5000", allow_unknown=True
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(url: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_USAGE_")}
    env.update(LLM_USAGE_DATABASE_URL=url, LLM_USAGE_DATA_DIR=str(tmp), LLM_USAGE_DEMO="true")
    cmd = [*dashboard_command(Settings(dashboard_port=port)), "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/_stcore/health", timeout=1).text == "ok":
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the dashboard did not start")


def _browser():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    return driver


_STATE_JS = """
const app = document.querySelector('[data-testid="stApp"]');
return {
  state: app ? app.getAttribute('data-test-script-state') : 'initial',
  stale: document.querySelectorAll('[data-stale="true"]').length > 0,
  heads: Array.from(document.querySelectorAll('h1')).map(h => h.innerText),
  errors: Array.from(document.querySelectorAll('[data-testid="stException"]')).map(e => e.innerText),
};
"""


def _settled(driver, title: str, started: float, timeout: float = 300) -> float:  # type: ignore[no-untyped-def]
    """Seconds from ``started`` until the script run the click caused ended with ``title`` shown.

    Streamlit marks its root with ``data-test-script-state`` (``running`` / ``notRunning``): first
    wait for the run to start (on a loaded machine the server may take a while to begin it; a run
    that ends unseen between two polls counts as 3 s, an overestimate, never an underestimate),
    then for it to end.
    """
    seen_running = False
    while time.perf_counter() - started < timeout:
        state = driver.execute_script(_STATE_JS)
        if state["errors"]:
            raise RuntimeError(f"{title}: {state['errors'][0]}")
        running = state["state"] in ("running", "rerunRequested", "initial")
        seen_running = seen_running or running
        ended = not running and (seen_running or time.perf_counter() - started > 3.0)
        if ended and not state["stale"] and any(title in h for h in state["heads"]):
            return time.perf_counter() - started
        time.sleep(0.02)
    raise RuntimeError(f"{title} did not settle in {timeout:.0f} s")


def _open_page(driver, name: str) -> float:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    link = driver.find_element(By.XPATH, f'//a[@data-testid="stSidebarNavLink"][.//span[normalize-space()="{name}"]]')
    started = time.perf_counter()
    link.click()
    return _settled(driver, TITLES.get(name, name), started)


def _button(driver, label: str):  # type: ignore[no-untyped-def]
    """The button labelled ``label``, once it is on the page (not timed)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    xpath = f'//button[normalize-space()="{label}"]'
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.XPATH, xpath))
    return driver.find_element(By.XPATH, xpath)


def _open_view(driver, view: str) -> float:  # type: ignore[no-untyped-def]
    button = _button(driver, view)
    started = time.perf_counter()
    button.click()
    return _settled(driver, "Budgets", started)


def _hourly(driver) -> float:  # type: ignore[no-untyped-def]
    """Explore at hourly grain (its default window, two days)."""
    return _open_view_titled(driver, "hour", "Explore")


def _open_view_titled(driver, label: str, title: str) -> float:  # type: ignore[no-untyped-def]
    button = _button(driver, label)
    started = time.perf_counter()
    button.click()
    return _settled(driver, title, started)


#: Explore at hourly grain over its longest window (7 days), by model: opened by URL.
HOURLY_7D = "explore?grain=hour&by=model&days=2026-10-25&days=2026-10-31"


def _hourly_week(driver, base: str) -> float:  # type: ignore[no-untyped-def]
    """The 7-day hourly Explore, loaded by its URL (a full page load; the session cookie signs in)."""
    started = time.perf_counter()
    driver.get(f"{base}/{HOURLY_7D}")
    return _settled(driver, "Explore", started)


def _pass(driver, base: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """One visit of every Budgets view, then every page (Explore at day, then hour grain)."""
    out: dict[str, float] = {}
    out["Budgets: Budgets"] = _open_page(driver, "Budgets")
    for view in BUDGET_VIEWS[1:]:
        out[f"Budgets: {view}"] = _open_view(driver, view)
    _open_view(driver, "Budgets")  # back to the default view for the next pass
    for name in PAGES:
        out[name] = _open_page(driver, name)
        if name == "Explore":
            out["Explore hourly (2 days)"] = _hourly(driver)
            _open_view_titled(driver, "day", "Explore")
    out["Explore hourly (7 days, URL)"] = _hourly_week(driver, base)
    out["Overview (URL, full load)"] = _url(driver, base, "", "Overview")
    return out


def _url(driver, base: str, path: str, title: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    driver.get(f"{base}/{path}")
    return _settled(driver, title, started)


def _measure(url: str) -> tuple[dict[str, float], dict[str, float]]:
    """Cold and warm seconds per page/view on a freshly started server."""
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        proc, base = _serve(url, Path(tmp))
        driver = _browser()
        try:
            from selenium.webdriver.support.ui import WebDriverWait

            driver.get(base)
            name_field = 'input[aria-label="User name"]'
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, name_field))
            driver.find_element(By.CSS_SELECTOR, 'input[aria-label="User name"]').send_keys(ADMIN)
            driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(PASSWORD)
            driver.find_element(By.XPATH, '//button[.//p[text()="Sign in"]]').click()
            time.sleep(0.1)
            _settled(driver, "Overview", time.perf_counter())
            cold = _pass(driver, base)
            warm = _pass(driver, base)
        finally:
            driver.quit()
            proc.terminate()
            proc.wait(timeout=20)
    return cold, warm


def main(argv: list[str] | None = None) -> None:
    """Build or reuse the database, then print cold/warm/empty seconds per page and view."""
    parser = argparse.ArgumentParser(prog="bench_dashboard_pages")
    default = int(os.environ.get("BENCH_DASHBOARD_ROWS", "10000000"))
    parser.add_argument("--rows", type=int, default=default, help="usage rows to build (cached per count)")
    args = parser.parse_args(argv if argv is not None else [])
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        print("  needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
        return
    started = time.perf_counter()
    path = ensure_db(args.rows)
    print(f"  database: {path.name} ({path.with_suffix('.done').read_text().strip()}; ready in "
          f"{time.perf_counter() - started:.0f} s this run)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        empty_url = f"sqlite:///{Path(tmp) / 'empty.db'}"
        engine = open_database(url=empty_url)
        _extras(engine, with_budgets=False)
        engine.dispose()
        empty, _ = _measure(empty_url)
    url = f"sqlite:///{path}"
    changed = _new_hour(url)
    after_change, _ = _measure(url)
    cold, warm = _measure(url)
    print(f"  after the change: {changed}")
    print(
        f"  {'page / view':<30}{'changed':>9}{'cold':>9}{'warm':>9}{'empty':>9}"
        "   (seconds; target: cold < 1 s at 10M rows)"
    )
    for label in cold:
        flag = "ok" if cold[label] < 1 else "SLOW"
        print(
            f"  {label:<30}{after_change[label]:>9.2f}{cold[label]:>9.2f}{warm[label]:>9.2f}{empty[label]:>9.2f}"
            f"   {flag}"
        )
    print(
        "  changed: a fresh server just after a sync-sized write (the figures kept for the old data are "
        "stale; the warmer and the first visitor compute them); cold: a fresh server, figures kept; "
        "warm: the second visit; empty: a fresh server on an empty database"
    )


def _new_hour(url: str) -> str:
    """Write what an hourly sync writes (one more hour of rows at the data's density, on its last day).

    The data version moves, so every kept figure is stale, and the last day's hourly rollup is marked.
    """
    from dataclasses import replace

    from collector.core.store import data_version, upsert_records

    engine = open_database(url=url)
    try:
        before = data_version(engine)
        rows = [
            replace(r, project=f"{r.project}-resync" if r.project else "resync")
            for r in generate(GeneratorConfig(days=1, rows_per_hour=1_140, seed=int(time.time()), end=END), limit=1_140)
        ]
        started = time.perf_counter()
        result = upsert_records(engine, rows)
        took = time.perf_counter() - started
        return f"{result.records:,} rows written in {took:.2f} s, data version {before} -> {data_version(engine)}"
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
