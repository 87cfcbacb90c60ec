"""The web chat page in a real headless Chromium: streamed answer, thinking block, stop button."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from test_server import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium and sets this, so a missing browser fails there instead of skipping.
if CHROMIUM is None and os.environ.get("EDGE_QWEN_REQUIRE_BROWSER"):
    raise RuntimeError("EDGE_QWEN_REQUIRE_BROWSER is set but no chromium is installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TIMEOUT_MS = 30_000


# The page's Content-Security-Policy forbids eval, so waits use locators, never JS strings.


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_chat_page_streams_answer_and_thinking(
    browser: Any, gguf_of: Callable[[str, str], Path]
) -> None:
    with serving(gguf_of("scripted", "Q8_0")) as (url, _):
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        page.goto(url + "/", timeout=TIMEOUT_MS)
        expect(page.locator("#title")).to_have_text("edge-qwen · qwen3-test", timeout=TIMEOUT_MS)
        page.fill("#input", "Hi")
        page.press("#input", "Enter")
        answer = page.locator(".msg.assistant .text").last
        answer.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_selector(".msg.assistant .stats", timeout=TIMEOUT_MS)
        assert answer.text_content() == "Hello world"
        assert page.locator("details.think .reasoning").text_content() == "Let me think"
        assert "8 tokens" in (page.locator(".msg.assistant .stats").text_content() or "")
        page.uncheck("#think")  # thinking off: no thinking block on the next answer
        page.fill("#input", "Again")
        page.press("#input", "Enter")
        expect(page.locator(".msg.assistant .stats")).to_have_count(2, timeout=TIMEOUT_MS)
        last = page.locator(".msg.assistant").last
        assert last.locator(".text").text_content() == "Hello world"
        assert last.locator("details.think").count() == 0
        page.close()


def test_stop_button_ends_a_runaway_answer(
    browser: Any, gguf_of: Callable[[str, str], Path]
) -> None:
    with serving(gguf_of("looping", "Q8_0"), n_ctx=8192) as (url, app):
        page = browser.new_page()
        page.goto(url + "/", timeout=TIMEOUT_MS)
        page.fill("#input", "Hi")
        page.press("#input", "Enter")
        reasoning = page.locator("details.think .reasoning")
        expect(reasoning).to_contain_text("Let meLet meLet me", timeout=TIMEOUT_MS)  # streaming
        page.click("#stop")
        page.wait_for_selector(".msg.assistant .stats", timeout=TIMEOUT_MS)
        assert "stopped" in (page.locator(".msg.assistant .stats").text_content() or "")
        assert page.locator("#send").is_visible() and not page.locator("#stop").is_visible()
        page.close()
        worker = app.state.runtime.worker
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while worker.in_flight:  # stopping in the page stopped the generation on the server
            assert time.monotonic() < deadline, "the server kept generating after Stop"
            time.sleep(0.02)
