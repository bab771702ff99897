"""The HTML report in a real browser: headless Chromium driven by selenium.

The page must load without a console error (a CSP refusal is one), filter and sort the
conflicts, show a bar's details on hover and focus, link failure marks to table rows,
zoom its timelines and keep the code snippets closed until asked for. A screenshot of the
mixed-small report is saved under pytest's tmp_path, and also into the directory named by
``TRACEAUDIT_SCREENSHOTS`` when it is set, for a person to look at.

Skipped, with the reason, when selenium, chromium or chromedriver is missing
(``.ci/run`` installs them where it can: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from locations import SAMPLES
from traceaudit import analyze
from traceaudit.report.html import write_html

selenium = pytest.importorskip(
    "selenium", reason="selenium is not installed (pip install -e '.[dev]')"
)
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_html import HOSTILE, HOSTILE_PROCESS, hostile  # noqa: E402
from test_plot import report_of  # noqa: E402

from builders import Story  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver on PATH (Debian: apt-get install chromium "
    "chromium-driver)",
)

COLLECT_ERRORS = """
window.__errors = window.__errors || [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('CSP: ' + e.violatedDirective + ' ' + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as error:  # a driver that does not match the browser, etc.
        pytest.skip(f"chromium did not start: {error.msg}")
    # collect errors from the first script on, in every page this driver opens
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COLLECT_ERRORS})
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("html")
    made = {
        "mixed": write_html(analyze(SAMPLES / "mixed-small.csv"), folder / "mixed.html"),
        "hostile": write_html(report_of(hostile()), folder / "hostile.html", figures=None),
    }
    return made


def open_page(driver, path: Path) -> None:
    driver.get(path.as_uri())
    driver.get_log("browser")  # nothing from an earlier page
    driver.refresh()


def problems(driver) -> list[str]:
    """Console errors and warnings, uncaught exceptions and CSP violations so far."""
    logged = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] in ("SEVERE", "WARNING")
    ]
    return logged + driver.execute_script("return window.__errors || []")


@pytest.fixture
def mixed(driver, pages):
    open_page(driver, pages["mixed"])
    driver.set_window_size(1280, 1000)
    return driver


def visible_rows(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#conflicts-table tbody tr'))"
        ".filter(r => r.offsetParent !== null).map(r => r.id)"
    )


def count_text(driver) -> str:
    return driver.find_element(By.ID, "conflict-count").text


# ---------------------------------------------------------------------------- tests


def test_the_page_loads_without_errors_and_the_script_ran(mixed):
    assert problems(mixed) == []
    assert mixed.execute_script("return document.documentElement.classList.contains('js')")
    assert mixed.find_element(By.ID, "conflict-filters").is_displayed()
    assert count_text(mixed) == "showing 43 of 43"
    # the answer comes first
    first = mixed.find_element(By.CSS_SELECTOR, "header dl.answer")
    assert first.location["y"] < mixed.find_element(By.ID, "conflicts").location["y"]


def test_filters_hide_rows_and_update_the_count(mixed):
    form = mixed.find_element(By.ID, "conflict-filters")
    assert len(visible_rows(mixed)) == 43
    Select(form.find_element(By.NAME, "verdict")).select_by_visible_text("oplock-probe")
    assert len(visible_rows(mixed)) == 2 and count_text(mixed) == "showing 2 of 43"
    Select(form.find_element(By.NAME, "verdict")).select_by_index(0)  # any

    Select(form.find_element(By.NAME, "holder")).select_by_visible_text("MsMpEng.exe")
    held = visible_rows(mixed)
    assert 0 < len(held) < 43 and count_text(mixed) == f"showing {len(held)} of 43"
    for row_id in held:
        assert "MsMpEng.exe" in mixed.find_element(By.ID, row_id).text
    Select(form.find_element(By.NAME, "holder")).select_by_visible_text("no holder")
    assert len(visible_rows(mixed)) == 3  # two permission refusals, one filtered holder
    Select(form.find_element(By.NAME, "holder")).select_by_index(0)

    Select(form.find_element(By.NAME, "process")).select_by_visible_text("WINWORD.EXE")
    rows = visible_rows(mixed)
    assert rows and all(
        "WINWORD.EXE" in mixed.find_element(By.ID, r).find_element(By.CSS_SELECTOR, ".c-proc").text
        for r in rows
    )
    Select(form.find_element(By.NAME, "process")).select_by_index(0)

    form.find_element(By.NAME, "path").send_keys("PANDAS")  # case-insensitive
    rows = visible_rows(mixed)
    assert len(rows) == 6 and count_text(mixed) == "showing 6 of 43"
    form.find_element(By.CSS_SELECTOR, "button[type=reset]").click()
    # A form's reset event comes before its fields are reset, so the page filters again
    # on the next turn of the event loop: wait for it rather than race it.
    WebDriverWait(mixed, 5).until(lambda d: count_text(d) == "showing 43 of 43")
    assert len(visible_rows(mixed)) == 43


def held_ms(driver) -> list[float | None]:
    return driver.execute_script(
        "const d = JSON.parse(document.getElementById('conflict-data').textContent);"
        "const by = Object.fromEntries(d.conflicts.map(c => [c.id, c]));"
        "return Array.from(document.querySelectorAll('#conflicts-table tbody tr'))"
        ".map(r => by[r.id].censored ? 1e300 : by[r.id].held_ms)"
    )


def test_sorting_by_hold_time_and_back_to_time(mixed):
    order = [r for r in visible_rows(mixed)]
    assert order == [f"conflict-{i}" for i in range(1, 44)]
    held = mixed.find_element(By.CSS_SELECTOR, "th[data-sort=held] button")
    held.click()  # longest first
    values = [v for v in held_ms(mixed) if v is not None]
    assert values == sorted(values, reverse=True) and values[0] == 1e300
    assert held_ms(mixed)[-1] is None  # unknown hold times last
    header = mixed.find_element(By.CSS_SELECTOR, "th[data-sort=held]")
    assert header.get_attribute("aria-sort") == "descending"
    held.click()  # shortest first
    values = [v for v in held_ms(mixed) if v is not None]
    assert values == sorted(values)
    mixed.find_element(By.CSS_SELECTOR, "th[data-sort=order] button").click()
    assert visible_rows(mixed) == order


def test_hovering_or_focusing_a_bar_shows_its_details(mixed):
    wrap = mixed.find_elements(By.CSS_SELECTOR, ".tl-wrap")[1]  # the uv path
    bar = wrap.find_element(By.CSS_SELECTOR, "rect.bar.blocker")
    mixed.execute_script("arguments[0].scrollIntoView({block: 'center'})", bar)
    tip = wrap.find_element(By.CSS_SELECTOR, ".tip")
    assert not tip.is_displayed()
    ActionChains(mixed).move_to_element(bar).perform()
    assert tip.is_displayed()
    text = tip.text
    assert "MsMpEng.exe (pid 33820)" in text
    assert "access read" in text and "share mode Read, Write, Delete" in text
    assert "opened " in text and "closed " in text and "→" in text
    ActionChains(mixed).move_by_offset(0, 400).perform()
    assert not tip.is_displayed()
    # the keyboard: focus shows it too
    other = wrap.find_elements(By.CSS_SELECTOR, "rect.bar")[0]
    mixed.execute_script("arguments[0].focus()", other)
    assert tip.is_displayed() and "pid" in tip.text


def test_a_bar_still_open_at_the_end_says_so(mixed):
    texts = mixed.execute_script(
        "return Array.from(document.querySelectorAll('rect.bar.open-edge')).map(b => b.dataset.tip)"
    )
    assert texts and any("no close in the capture" in t for t in texts)


def test_failure_marks_link_to_existing_rows(mixed):
    links = mixed.find_elements(By.CSS_SELECTOR, "svg.timeline a.fail")
    assert len(links) >= 20
    for link in links:
        target = link.get_dom_attribute("href").split("#", 1)[1]
        assert mixed.find_elements(By.ID, target), target
    # following one shows the row, even when the filters had hidden it
    form = mixed.find_element(By.ID, "conflict-filters")
    Select(form.find_element(By.NAME, "verdict")).select_by_visible_text("oplock-probe")
    first = links[0]
    target = first.get_dom_attribute("href").split("#", 1)[1]
    mixed.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
    ActionChains(mixed).move_to_element(first).click().perform()
    assert mixed.execute_script("return location.hash") == f"#{target}"
    assert mixed.find_element(By.ID, target).is_displayed()
    assert count_text(mixed) == "showing 43 of 43"


def visible_range(driver, index: int = 0) -> tuple[float, float]:
    svg = driver.find_elements(By.CSS_SELECTOR, "svg.timeline")[index]
    return float(svg.get_attribute("data-view-lo")), float(svg.get_attribute("data-view-hi"))


def test_zoom_changes_the_visible_range_and_reset_restores_it(mixed):
    wrap = mixed.find_elements(By.CSS_SELECTOR, ".tl-wrap")[0]
    mixed.execute_script("arguments[0].scrollIntoView({block: 'center'})", wrap)
    lo, hi = visible_range(mixed)
    output = wrap.find_element(By.CSS_SELECTOR, ".tl-range")
    before = output.text
    wrap.find_element(By.CSS_SELECTOR, "button[data-zoom=in]").click()
    lo2, hi2 = visible_range(mixed)
    assert hi2 - lo2 == pytest.approx((hi - lo) / 2)
    assert output.text != before
    first_tick = wrap.find_element(By.CSS_SELECTOR, "g.tick text").text
    wrap.find_element(By.CSS_SELECTOR, "button[data-zoom=right]").click()
    lo3, _ = visible_range(mixed)
    assert lo3 > lo2
    assert wrap.find_element(By.CSS_SELECTOR, "g.tick text").text != first_tick
    # the mouse wheel over the plot zooms around the pointer
    plot = wrap.find_element(By.CSS_SELECTOR, "svg.plot")
    mixed.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "arguments[0].dispatchEvent(new WheelEvent('wheel', {deltaY: -100, bubbles: true,"
        " cancelable: true, clientX: r.left + r.width / 2, clientY: r.top + 5}));",
        plot,
    )
    lo4, hi4 = visible_range(mixed)
    assert hi4 - lo4 == pytest.approx((hi2 - lo2) * 0.8)
    wrap.find_element(By.CSS_SELECTOR, "button[data-zoom=reset]").click()
    assert visible_range(mixed) == pytest.approx((lo, hi))
    assert output.text == before
    # bars are re-drawn for the new range: a zoomed-in bar is wider
    bar = wrap.find_element(By.CSS_SELECTOR, "rect.bar.blocker")
    width = float(bar.get_attribute("width"))
    wrap.find_element(By.CSS_SELECTOR, "button[data-zoom=in]").click()
    assert float(bar.get_attribute("width")) > width


def test_snippet_tabs_start_closed_and_open_on_click(mixed):
    details = mixed.find_element(By.ID, "snippets")
    assert details.get_attribute("open") is None
    assert not mixed.find_element(By.CSS_SELECTOR, "#snippet-rust pre").is_displayed()
    summary = details.find_element(By.TAG_NAME, "summary")
    mixed.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    tabs = details.find_elements(By.CSS_SELECTOR, ".tabs button[role=tab]")
    assert [t.text for t in tabs] == ["Rust (backon)", "Python (tenacity)", "Go", ".NET (Polly)"]
    assert mixed.find_element(By.CSS_SELECTOR, "#snippet-rust pre").is_displayed()
    assert not mixed.find_element(By.CSS_SELECTOR, "#snippet-go pre").is_displayed()
    tabs[2].click()
    assert mixed.find_element(By.CSS_SELECTOR, "#snippet-go pre").is_displayed()
    assert not mixed.find_element(By.CSS_SELECTOR, "#snippet-rust pre").is_displayed()
    assert tabs[2].get_attribute("aria-selected") == "true"


def test_the_layout_reads_at_1280_pixels(mixed, tmp_path):
    # the path column keeps a readable width and nothing overflows the table's box
    widths = mixed.execute_script(
        "const t = document.getElementById('conflicts-table');"
        "return [t.scrollWidth, t.parentElement.clientWidth,"
        " t.querySelector('td.c-path').getBoundingClientRect().width,"
        " t.querySelector('td.c-held').scrollWidth, t.querySelector('td.c-held').clientWidth]"
    )
    table, box, path, held_scroll, held_client = widths
    assert table <= box + 1
    assert path >= 150  # ~22 characters of the monospace path font
    assert held_scroll <= held_client  # the duration is never clipped
    for label in mixed.find_elements(By.CSS_SELECTOR, "svg.timeline text.label"):
        box = label.rect
        plot = label.find_element(By.XPATH, "ancestor::*[name()='svg'][1]").find_element(
            By.CSS_SELECTOR, "svg.plot"
        )
        assert box["x"] + box["width"] <= plot.rect["x"] + 1  # labels never spill over bars
        outer = label.find_element(By.XPATH, "ancestor::*[name()='svg'][last()]")
        assert box["x"] >= outer.rect["x"] - 1, label.text  # nor are cut at the left edge
    height = mixed.execute_script("return document.documentElement.scrollHeight")
    mixed.set_window_size(1280, min(height, 16000))
    shot = tmp_path / "mixed-small-1280.png"
    assert mixed.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    keep = os.environ.get("TRACEAUDIT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    assert problems(mixed) == []


def test_print_shows_every_row_and_hides_the_controls(mixed):
    form = mixed.find_element(By.ID, "conflict-filters")
    Select(form.find_element(By.NAME, "verdict")).select_by_visible_text("oplock-probe")
    mixed.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert len(visible_rows(mixed)) == 43
        assert not form.is_displayed()
        assert not mixed.find_element(By.CSS_SELECTOR, ".tl-controls").is_displayed()
    finally:
        mixed.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def test_a_hostile_name_stays_text(driver, pages):
    open_page(driver, pages["hostile"])
    assert problems(driver) == []  # no alert ran, no script was refused
    assert driver.execute_script("return document.scripts.length") == 2
    row = driver.find_element(By.ID, "conflict-1")
    assert HOSTILE in row.text.replace("\n", "")
    holder = Select(driver.find_element(By.NAME, "holder"))
    assert HOSTILE_PROCESS in [o.text for o in holder.options]
    holder.select_by_visible_text(HOSTILE_PROCESS)
    assert count_text(driver) == "showing 1 of 1"
    labels = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg.timeline text.label")]
    assert f"{HOSTILE_PROCESS} (2)" in labels


def test_a_report_without_conflicts_loads_cleanly(driver, tmp_path):
    quiet = Story().op(0, 1, "ReadFile", r"C:\a", process="a.exe")
    page = write_html(report_of(quiet), tmp_path / "quiet.html", figures=None)
    open_page(driver, page)
    assert problems(driver) == []
    assert "No failed file operation" in driver.find_element(By.ID, "conflicts").text
