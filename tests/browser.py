"""Headless Chromium for the browser tests (Debian's `chromium` and `chromium-driver`).

Selenium is given the Debian chromedriver explicitly, so Selenium Manager never tries to download a
driver (nothing outside the machine is reachable). A test that needs a browser asks for the
``browser`` fixture; it skips, saying what to install, where Chromium or its driver is missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
WINDOW = (1400, 1000)


def _first_on_path(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def start_chromium(download_dir: Path | None = None) -> Any:
    """A headless Chromium WebDriver, or a skip naming the missing Debian package."""
    binary, driver = _first_on_path(CHROMIUM_NAMES), _first_on_path(DRIVER_NAMES)
    if binary is None or driver is None:
        pytest.skip("headless Chromium not installed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     # Debian's /etc/chromium.d turns GPU rasterization on; without a GPU that is a software GPU
                     # process, and on a loaded 2-core machine it left the ZenML dashboard's renderer deaf to
                     # chromedriver for minutes. Raster and composite in the renderer instead.
                     "--disable-gpu-rasterization", "--disable-gpu-compositing", "--disable-software-rasterizer",
                     "--disable-background-timer-throttling", "--disable-renderer-backgrounding"):
        options.add_argument(argument)
    # "eager": a command waits for the DOM, not for every subresource; offline, the pages' external images
    # (the ZenML dashboard's flavor logos and avatars) never finish loading and "normal" waits on them
    options.page_load_strategy = "eager"
    if download_dir is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the page is still loading: retry until the deadline
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition!r}"
                         + (f" (last error: {last_error})" if last_error else ""))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium for one test; screenshots go where the test saves them (tmp_path by default)."""
    driver = start_chromium(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()
