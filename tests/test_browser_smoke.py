"""The headless-Chromium fixture itself: a page renders, its script runs, and a screenshot is written."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By

from tests.browser import wait_for


def test_browser_runs_javascript_and_saves_a_screenshot(browser, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><body><p id='out'>waiting</p>"
                    "<script>document.getElementById('out').textContent = 'olá ' + (6 * 7);</script></body></html>",
                    encoding="utf-8")
    browser.get(page.as_uri())
    assert wait_for(lambda: browser.find_element(By.ID, "out").text == "olá 42", what="the script's output")
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
