"""The arena page in headless Chromium: a question in, four answer panes with evidence and the sources out."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.browser import wait_for
from tests.conftest import workdir_config

# the first test here may pay for the session's tiny pipeline run (pipeline_run): minutes on a busy machine
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def arena(pipeline_run):
    """The app of `ptwiki-llm serve` on a free loopback port, in this process, stopped at teardown."""
    import uvicorn

    from ptwiki_llm.arena import prepare

    workdir, _ = pipeline_run
    answerer, app = prepare(workdir_config(workdir), log=lambda _: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=60, what="the arena server to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", answerer
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        answerer.close()


@pytest.mark.slow
def test_a_question_gets_four_answer_panes_with_evidence_and_the_sources(arena, browser, tmp_path: Path,
                                                                          record_property) -> None:
    from ptwiki_llm.rag.examples import example_questions

    url, answerer = arena
    (example, *_) = example_questions(answerer.config, count=1, retriever=answerer.retriever())
    browser.get(url + "/")
    meta = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#meta[data-ready]"), what="the registry versions")
    assert f"challenger v{answerer.versions.challenger}" in meta.text and "champion " in meta.text
    browser.find_element(By.ID, "question").send_keys(example.question)
    browser.find_element(By.ID, "send").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#status[data-done]"), timeout=300,
             what="the four answers")
    panes = browser.find_elements(By.CSS_SELECTOR, ".pane")
    assert [p.get_attribute("data-arm") for p in panes] == ["base", "base+rag", "ft", "ft+rag"]
    for pane in panes:
        assert pane.find_element(By.CSS_SELECTOR, ".answer").text.strip()
        evidence = pane.find_elements(By.CSS_SELECTOR, ".evidence")
        assert bool(evidence) == pane.get_attribute("data-arm").endswith("+rag")
    sources = browser.find_elements(By.CSS_SELECTOR, "#source-list .source")
    assert sources and example.title in sources[0].text
    assert sources[0].find_element(By.TAG_NAME, "a").get_attribute("href").startswith("https://pt.wikipedia.org/")
    shot = tmp_path / "arena.png"
    assert browser.save_screenshot(str(shot))
    record_property("screenshot", str(shot))
    if os.environ.get("PTWIKI_SCREENSHOTS"):  # kept beside the test output (CI: an artifacts folder)
        folder = Path(os.environ["PTWIKI_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / shot.name)
    print(f"arena screenshot: {shot}")
