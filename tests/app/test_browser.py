"""End to end in a real headless Chromium: `medklip serve` on loopback, upload the real DICOM
RG1_UNCR.dcm, ask for two findings and one described disease, see the table and overlays; a
text file gets the error message. CI installs Debian's chromium + chromium-driver (.ci/run)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medklip.knowledge import KnowledgeBase
from tests.data.test_image_io import rg1_path

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("MEDKLIP_REQUIRE_BROWSER") == "1":
        raise RuntimeError("MEDKLIP_REQUIRE_BROWSER=1 but chromium / chromedriver are not installed "
                           "(apt-get install chromium chromium-driver)")
    pytest.skip("needs Debian's chromium and chromium-driver (CI installs them)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    folder = os.environ.get("MEDKLIP_SCREENSHOT_MODEL", tiny_model_dir)  # docs: the screenshot with a trained model
    port = _free_port()
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "medklip", "serve", "--model", str(folder), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                    assert json.load(r)["status"] == "ok"
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"medklip serve exited: {log.read_text()}") from None
                time.sleep(0.5)
        else:
            raise RuntimeError(f"medklip serve did not start: {log.read_text()}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100",
                 f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_upload_predict_and_error_in_chromium(server, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    browser.get(server)
    total = len(KnowledgeBase.extended())  # the 76 of the base and the 181 of the packaged extension
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#finding-list input")) == total)
    browser.find_element(By.ID, "file").send_keys(rg1_path())
    search = browser.find_element(By.ID, "finding-search")
    search.send_keys("effus")
    visible = [e for e in browser.find_elements(By.CSS_SELECTOR, "#finding-list label") if e.is_displayed()]
    shown = [e.get_attribute("data-name") for e in visible]  # the search filters the list
    assert shown == [e.name for e in KnowledgeBase.extended().entities if "effus" in e.name.lower()]
    assert shown[0] == "effusion" and "pericardial effusion" in shown
    browser.find_element(By.ID, "finding-effusion").click()
    search.clear()
    search.send_keys("pneumonia")
    browser.find_element(By.ID, "finding-pneumonia").click()
    browser.find_element(By.ID, "describe-name").send_keys("covid-19")
    browser.find_element(By.ID, "describe-text").send_keys("Bilateral peripheral ground-glass opacities in the lower zones.")
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")) == 3)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")]
    assert {r.split()[0] for r in rows} == {"effusion", "pneumonia", "covid-19"}
    probs = [float(r.split()[1]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img.heat')].filter(i => i.complete && i.naturalWidth > 0).length") == 3)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overlays .card")) == 3
    browser.execute_script("const s = document.getElementById('opacity'); s.value = 60;"
                           "s.dispatchEvent(new Event('input'));")
    assert browser.execute_script("return document.querySelector('img.heat').style.opacity") == "0.6"
    shot = Path(os.environ.get("MEDKLIP_SCREENSHOT", tmp_path / "page.png"))
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(1100, height + 120), 2400))
    browser.save_screenshot(str(shot))
    browser.set_window_size(1400, 1100)
    assert shot.stat().st_size > 10_000

    notes = tmp_path / "notes.txt"
    notes.write_text("this is a report, not an image")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "error" in d.find_element(By.ID, "message").get_attribute("class"))
    assert "not a PNG, JPG or DICOM" in browser.find_element(By.ID, "message").text
