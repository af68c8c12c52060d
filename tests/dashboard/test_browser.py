"""Real-browser smoke test: Debian's headless Chromium drives the running app through selenium.

Starts ``streamlit run`` on a free port against the seeded database (demo mode pins "today" to
the seed's last day, so the Overview shows the seed's totals), signs in through the form, visits
every page through the sidebar, saves a screenshot of each under ``tests/artifacts/`` and fails
on any Streamlit exception box or on a stored admin key showing up in the HTML. Then, in the same
browser, the sign-in must survive a reload and reach a new tab (the HttpOnly session cookie), and
signing out in one tab must sign the other out at its next load.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector.app import dashboard_command
from collector.core.settings import Settings
from tests.dashboard.conftest import DUMMY_KEY, MTD, PASSWORD, SECRET_KEYS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1000",
)
PAGES = (
    "Overview",
    "Explore",
    "Tokens",
    "Reconciliation",
    "Budgets",
    "Proxy",
    "Import",
    "Data & health",
    "Connections",
    "Users",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running_app(dashboard_db, tmp_path) -> Iterator[str]:
    """``streamlit run`` on a free loopback port, reading the seeded database."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_USAGE_")}
    env.update(
        LLM_USAGE_DATABASE_URL=dashboard_db,
        LLM_USAGE_DEMO="true",
        LLM_USAGE_DATA_DIR=str(tmp_path),
        LLM_USAGE_SECRET_KEYS=SECRET_KEYS,
    )
    # The production command (st.App with security headers, flags from collector.app), on a free port.
    cmd = dashboard_command(Settings(dashboard_port=port, dashboard_host="127.0.0.1"))
    cmd += ["--server.fileWatcherType", "none"]
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "streamlit.log").read_text()
            time.sleep(0.3)
        else:
            pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text())
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium from Debian (``apt-get install chromium chromium-driver``; .ci/run does)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


_STATE_JS = """
return {
  running: document.querySelectorAll('[data-testid="stStatusWidget"], [data-testid="stSkeleton"]').length > 0,
  heads: Array.from(document.querySelectorAll('h1')).map(h => h.innerText),
};
"""


def _wait_idle(driver, title: str | None = None, timeout: float = 45) -> None:
    """Until the script has finished (no running indicator) and, if given, the title shows."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = driver.execute_script(_STATE_JS)
        if not state["running"] and (title is None or any(title in h for h in state["heads"])):
            time.sleep(1.0)  # charts draw after the script run ends
            if not driver.execute_script(_STATE_JS)["running"]:
                return
        time.sleep(0.3)
    raise AssertionError(f"page {title!r} did not finish rendering; headings: {state.get('heads')}")


def _wait_for_text(driver, text: str, timeout: float = 45) -> None:
    """Until ``text`` is in the page (an event to wait for, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while text not in driver.page_source:
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        time.sleep(0.3)


def test_sign_in_and_visit_every_page(running_app, browser):
    from selenium.webdriver.common.by import By

    driver = browser
    ARTIFACTS.mkdir(exist_ok=True)
    driver.get(running_app)
    _wait_idle(driver, "LLM usage & cost")
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"]')  # nothing before sign-in
    driver.save_screenshot(str(ARTIFACTS / "00_sign_in.png"))
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="User name"]').send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(PASSWORD)
    driver.find_element(By.XPATH, '//button[.//p[text()="Sign in"]]').click()
    _wait_idle(driver, "Overview")
    for index, name in enumerate(PAGES, start=1):
        if index > 1:
            link = driver.find_element(
                By.XPATH, f'//a[@data-testid="stSidebarNavLink"][.//span[normalize-space()="{name}"]]'
            )
            link.click()
            _wait_idle(driver, {"Import": "Import billing CSV files"}.get(name, name))
        shot = ARTIFACTS / f"{index:02d}_{name.lower().replace(' & ', '_').replace(' ', '_')}.png"
        driver.save_screenshot(str(shot))
        errors = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        assert not errors, f"{name}: {errors[0].text}"
        html = driver.page_source
        assert DUMMY_KEY not in html, name
        assert "Traceback" not in html, name
        if name == "Overview":
            # After the sign-in's redirect the page is a new session: under load its elements can
            # still be placeholders when the status widget first goes quiet, so wait for the figure.
            _wait_for_text(driver, MTD)
    assert shutil.disk_usage(ARTIFACTS).free > 0 and len(list(ARTIFACTS.glob("*.png"))) >= len(PAGES)
    _sign_in_survives_reload_and_new_tab_and_sign_out_reaches_the_other_tab(driver, running_app)


def _sign_in_survives_reload_and_new_tab_and_sign_out_reaches_the_other_tab(driver, url: str) -> None:
    """Part of the test above (one app start): the HttpOnly cookie keeps the sign-in, sign-out ends it."""
    from selenium.webdriver.common.by import By

    cookie = next(c for c in driver.get_cookies() if c["name"] == "llm_usage_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert "llm_usage_session" not in driver.execute_script("return document.cookie")

    driver.refresh()
    assert _signed_in_view(driver), "a reload lost the sign-in"
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(f"{url}/tokens")  # as a link from an alert e-mail opens a page
    assert _signed_in_view(driver), "a new tab was not signed in"
    second = driver.current_window_handle

    driver.switch_to.window(first)
    driver.find_element(By.XPATH, '//button[.//p[text()="Sign out"]]').click()
    deadline = time.monotonic() + 45
    while not driver.find_elements(By.CSS_SELECTOR, 'input[aria-label="Password"]'):
        assert time.monotonic() < deadline, "sign-out did not bring back the sign-in form"
        time.sleep(0.3)
    assert not any(c["name"] == "llm_usage_session" for c in driver.get_cookies())
    driver.switch_to.window(second)
    driver.refresh()
    assert not _signed_in_view(driver), "the other tab stayed signed in after sign-out"


def _signed_in_view(driver) -> bool:
    """True when the page shows the signed-in sidebar, False when it shows the sign-in form."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if driver.find_elements(By.XPATH, '//button[.//p[text()="Sign out"]]'):
            return True
        if driver.find_elements(By.CSS_SELECTOR, 'input[aria-label="Password"]'):
            return False
        time.sleep(0.3)
    raise AssertionError("neither the sign-in form nor the signed-in sidebar appeared")
