"""`equal ui` (what `make ui` runs) serves the Dagster UI on 127.0.0.1: its GraphQL API lists our assets, and a real
headless Chromium shows a played round's page (metadata, arms table, reward plot, asset checks) and the asset graph. Screenshots are kept under
``$EQUAL_TEST_ARTIFACTS`` (default ``.test-artifacts/`` in the repository)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from equal_dagster.cli import main

ARTIFACTS = Path(os.environ.get("EQUAL_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / ".test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stop_group(process: subprocess.Popen) -> None:
    """Stop `dagster dev` and its children (webserver, daemon, code server) by their process group."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def chromium():
    """A headless Chromium driven by Debian's chromedriver (`.ci/run` installs both when missing)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


DIALOG = "Notify me about Dagster security updates"  # Dagster's first-visit dialog


def wait_for_text(driver, texts: list[str], timeout: float = 60) -> str:
    """The page's text once it shows all of `texts` and Dagster's first-visit dialog is gone."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        dismiss_popups(driver)  # the first visit's dialog can open late, over the page, on a loaded machine
        body = driver.find_element("tag name", "body").text
        if all(t in body for t in texts) and DIALOG not in body:  # a dismissed dialog takes a moment to close
            return body
        time.sleep(0.5)
    raise AssertionError(f"{texts} not all on the page, or the dialog still open; it shows: {body[:2000]}")


def dismiss_popups(driver) -> None:
    """Dagster's first visit shows a dialog until dismissed."""
    for label in ("Dismiss", "Got it", "Close", "Skip", "Not now"):
        for button in driver.find_elements("xpath", f"//button[normalize-space()='{label}']"):
            try:
                button.click()
            except Exception:  # noqa: BLE001 - a button that went away meanwhile
                pass


@pytest.mark.slow
def test_equal_ui_serves_the_asset_graph_and_a_browser_shows_a_rounds_checks(clustered, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(clustered.home, home)
    monkeypatch.setenv("EQUAL_LLM_BACKEND", "rules")
    assert main(["--home", str(home), "rounds", "1"]) == 0  # a round on the home's own instance: the UI shows it
    port = free_port()
    env = {**os.environ, "EQUAL_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    log = open(tmp_path / "ui.log", "w")
    process = subprocess.Popen([str(Path(sys.executable).parent / "equal"), "ui", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        nodes = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                nodes = graphql(port, "{ assetNodes { assetKey { path } groupName } }").get("data", {}).get("assetNodes")
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, (tmp_path / "ui.log").read_text()[-3000:]
        assert {"path": ["corpus"]} in [n["assetKey"] for n in nodes]
        assert (home / "dagster" / "dagster.yaml").exists()  # the persistent instance lives under EQUAL_HOME

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver = chromium()
        try:
            driver.get(f"http://127.0.0.1:{port}/assets/bandit_rounds")
            time.sleep(2)
            dismiss_popups(driver)
            body = wait_for_text(driver, ["bandit_rounds", "arms_per_round", "round_reward", "r0001",
                                          "Latest check results"])
            driver.save_screenshot(str(ARTIFACTS / "ui-bandit-rounds.png"))
            assert DIALOG not in body  # the dialog is gone
            # the arms table (markdown): shown in place, or behind its value's link when long
            arms = driver.find_element("xpath", "//tr[td[normalize-space()='arms']]")
            if not arms.find_elements("css selector", "table"):
                driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();",
                                      arms.find_element("css selector", "a"))
            deadline = time.monotonic() + 30
            headers = []
            while time.monotonic() < deadline:
                headers = [h.text for h in driver.find_elements("css selector", "table th")]
                if "top terms" in headers:
                    break
                time.sleep(0.5)
            assert {"arm", "why", "score", "mean reward", "top terms"} <= set(headers), headers
            driver.save_screenshot(str(ARTIFACTS / "ui-bandit-rounds-arms.png"))
            driver.get(f"http://127.0.0.1:{port}/assets/bandit_rounds")
            dismiss_popups(driver)
            wait_for_text(driver, ["reward_plot", "r0001"])
            # the reward plot: a PNG in markdown, which Dagster shows behind the value's link (long values open in a
            # dialog); the image must render there
            link = driver.find_element("xpath", "//tr[td[contains(., 'reward_plot')]]//a")
            driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", link)
            deadline = time.monotonic() + 30
            while not driver.find_elements("css selector", "img[src^='data:image/png']") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert driver.find_elements("css selector", "img[src^='data:image/png']"), "no plot rendered"
            time.sleep(1)  # the dialog fades in
            driver.save_screenshot(str(ARTIFACTS / "ui-bandit-rounds-reward-plot.png"))
            driver.get(f"http://127.0.0.1:{port}/assets/bandit_rounds?view=checks")
            dismiss_popups(driver)
            wait_for_text(driver, ["within_budget", "reward_in_range", "every_document_has_a_status"])
            driver.save_screenshot(str(ARTIFACTS / "ui-bandit-rounds-checks.png"))
            driver.get(f"http://127.0.0.1:{port}/asset-groups")  # the asset graph: one node per stage's group
            dismiss_popups(driver)
            wait_for_text(driver, ["Global asset lineage"])
            groups = {"ingest", "extract", "embed", "dataset", "train", "evaluate"}
            deadline = time.monotonic() + 30
            shown: set[str] = set()
            while time.monotonic() < deadline and not groups <= shown:
                shown = {e.text.strip() for e in driver.find_elements("xpath", "//*[not(*)][normalize-space(text())]")}
                time.sleep(0.5)
            assert groups <= shown, sorted(shown)[:80]  # each group's own label, not a word inside an asset's name
            time.sleep(2)  # the graph lays itself out
            driver.save_screenshot(str(ARTIFACTS / "ui-asset-graph.png"))
        finally:
            driver.quit()
        served = (tmp_path / "ui.log").read_text()  # `equal ui` starts without a warning (`make ui` runs it)
        assert "Warning" not in served and "WARNING" not in served, served[-3000:]
    finally:
        stop_group(process)
        log.close()
