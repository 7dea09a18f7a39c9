"""`snakemake --report` on the tiny run, opened in headless Chromium: the page loads without
errors, shows the six result categories in the study's order, a CAM gallery image and every
table rendered as HTML.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and selenium (the `test`
extra). Without them the browser test is skipped, unless XAIMED_REQUIRE_CHROMIUM is set (CI).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import snakemake

pytestmark = pytest.mark.workflow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# the study's order, which the report's menu (sorted by name) shows thanks to the numbers
CATEGORIES = [
    "1. Data",
    "2. Training",
    "3. Explanations",
    "4. Explanation quality",
    "5. Generalisation",
    "6. Statistical tests",
]
# The network is closed: without these flags Chromium waits on updates, sync and QUIC.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


@pytest.fixture(scope="module")
def report(tiny_run) -> Path:
    path = tiny_run / "results" / "report.html"
    snakemake(tiny_run, "--report", str(path))
    return path


def test_report_is_self_contained(report):
    page = report.read_text()
    # every script and image is inlined: nothing to fetch from a network
    assert not re.search(r"""<(script|img|link)[^>]+(src|href)=["']https?:""", page)
    for name in ("cams_brain_mri.png", "ttest_models.html", "cd_lesions.png", "data_summary.html"):
        assert name in page
    # captions rendered without reStructuredText warnings (e.g. duplicate link targets)
    assert "System Message" not in page and "Duplicate explicit target" not in page
    # every table of the run is in the report as an HTML page, not only as a CSV download
    tables = sorted(report.parent.glob("tables/*.csv"))
    assert len(tables) >= 17
    for table in tables:  # a result's entry: "<path>": {"name": ...
        assert f'"results/tables/{table.stem}.html": {{"name"' in page, table.name
        assert f'"results/tables/{table.name}": {{"name"' not in page, table.name


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        if os.environ.get("XAIMED_REQUIRE_CHROMIUM"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="xaimed-chromium-")  # a new, empty profile
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(10)  # the report is a React app: elements appear after scripts run
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _click(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//*[normalize-space(text())='{text}']").click()


def _row(driver, contains: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//tr[td[contains(normalize-space(.), '{contains}')]]")


def test_report_in_headless_chromium(report, browser, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url = report.as_uri()
    browser.get(url)
    body = browser.find_element(By.TAG_NAME, "body")
    WebDriverWait(browser, 20).until(lambda d: "RESULTS" in body.text.upper())
    # the menu lists the categories in the study's order
    tops = [
        browser.find_element(By.XPATH, f"//*[normalize-space(text())='{category}']").location["y"]
        for category in CATEGORIES
    ]
    assert tops == sorted(tops) and len(set(tops)) == len(tops), tops
    assert "2-fold cross-validation" in body.text  # the workflow description, from the config
    # config lists written as text, not as Python's reprs
    assert "resnet18, efficientnet_b0" in body.text and "brain_mri, lesions" in body.text
    assert "['" not in body.text and "']" not in body.text

    # a quality table, rendered as HTML like every other table
    _click(browser, "4. Explanation quality")
    _click(browser, "Tables")
    _row(browser, "localisation:").find_element(By.TAG_NAME, "a").click()
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    headers = [th.text for th in browser.find_elements(By.TAG_NAME, "th")]
    assert {"method", "metric", "n_images"} <= set(headers), headers
    browser.switch_to.default_content()
    browser.get(url)

    # A table is rendered as HTML (in a frame), not only offered for download.
    _click(browser, "6. Statistical tests")
    _click(browser, "Tables")
    _row(browser, "ttest_models").find_element(By.TAG_NAME, "a").click()
    frame = browser.find_element(By.TAG_NAME, "iframe")
    browser.switch_to.frame(frame)
    headers = [th.text for th in browser.find_elements(By.TAG_NAME, "th")]
    assert {"model_a", "model_b", "p_nb_adjusted", "family"} <= set(headers)
    assert len(browser.find_elements(By.XPATH, "//tbody/tr")) == 4  # 2 datasets x 2 metrics
    browser.switch_to.default_content()

    # A CAM gallery, labelled by dataset, classes, model and methods, shown as an image.
    browser.get(url)
    _click(browser, "3. Explanations")
    _click(browser, "CAM galleries")
    row = _row(browser, "brain_mri")
    assert "glioma" in row.text and "resnet18" in row.text and "gradcampp" in row.text
    row.find_element(By.TAG_NAME, "a").click()
    image = WebDriverWait(browser, 20).until(
        ec.visibility_of_element_located((By.XPATH, "//img[starts-with(@src, 'data:image/png')]"))
    )
    assert int(image.get_attribute("naturalWidth")) > 100
    assert browser.execute_script("return arguments[0].complete", image)

    screenshot = tmp_path_factory.mktemp("report") / "report_cam_gallery.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"report screenshot: {screenshot}")
    assert _errors(browser) == []
