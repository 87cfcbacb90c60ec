"""The web chat page in a real headless Chromium: streamed answer, thinking block, stop button."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.live_server import serving
from tests.support.slow import slow_fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium and sets this, so a missing browser fails there instead of skipping.
if CHROMIUM is None and os.environ.get("EDGE_QWEN_REQUIRE_BROWSER"):
    raise RuntimeError("EDGE_QWEN_REQUIRE_BROWSER is set but no chromium is installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


# The page's Content-Security-Policy forbids eval, so waits use locators, never JS strings.


@slow_fixture(scope="module")
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
        # A runaway answer: without this the loop guard ends the looping model's answer
        # after about 130 tokens, half a second, which a busy machine's click can miss.
        page.route("**/v1/chat/completions", _without_loop_guard)
        page.goto(url + "/", timeout=TIMEOUT_MS)
        page.fill("#input", "Hi")
        page.press("#input", "Enter")
        reasoning = page.locator("details.think .reasoning")
        # still streaming, past where the loop guard would have closed the think block
        expect(reasoning).to_contain_text("Let me" * 60, timeout=TIMEOUT_MS)
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


def _without_loop_guard(route: Any) -> None:
    """Pass the page's request on with edge-qwen's loop guard turned off."""
    body = json.loads(route.request.post_data or "{}")
    route.continue_(post_data=json.dumps({**body, "loop_guard": False}))


def _watch(page: Any) -> dict[str, list[str]]:
    """Everything that betrays running injected code: dialogs, page errors, CSP refusals."""
    seen: dict[str, list[str]] = {"dialog": [], "pageerror": [], "csp": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialog"].append(dialog.message)
        dialog.dismiss()

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            seen["csp"].append(msg.text)

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["pageerror"].append(str(exc)))
    page.on("console", on_console)
    return seen


def test_model_output_is_text_never_markup(browser: Any, hostile_gguf: Path) -> None:
    from tests.support.scripted import HOSTILE_ANSWER, HOSTILE_THINKING

    typed = "<img src=y onerror=alert(4)><b>bold</b>"
    with serving(hostile_gguf) as (url, _):
        page = browser.new_page()
        seen = _watch(page)
        page.goto(url + "/", timeout=TIMEOUT_MS)
        page.fill("#input", typed)
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.assistant .stats", timeout=TIMEOUT_MS)
        page.wait_for_timeout(500)  # an injected onerror fires after the failed image load
        log = page.locator("#log")
        assert page.locator(".msg.assistant .text").text_content() == HOSTILE_ANSWER
        assert page.locator("details.think .reasoning").text_content() == HOSTILE_THINKING
        assert page.locator(".msg.user .text").text_content() == typed
        assert log.locator("img, script, a, b, iframe, svg, object").count() == 0
        assert page.evaluate("() => window.pwned") is None
        assert seen == {"dialog": [], "pageerror": [], "csp": []}
        # The watch itself works: the same markup, parsed as HTML, is caught.
        page.evaluate("(html) => { document.getElementById('log').innerHTML = html; }", typed)
        page.wait_for_timeout(500)
        assert seen["dialog"] or seen["csp"], "the injection detector saw nothing"
        page.close()


def test_csp_stops_markup_even_if_the_page_parsed_it(
    browser: Any, gguf_of: Callable[[str, str], Path]
) -> None:
    with serving(gguf_of("scripted", "Q8_0")) as (url, _):
        page = browser.new_page()
        seen = _watch(page)
        response = page.goto(url + "/", timeout=TIMEOUT_MS)
        csp = response.headers["content-security-policy"]
        for rule in (
            "default-src 'self'",
            "connect-src 'self'",
            "img-src 'none'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ):
            assert rule in csp, (rule, csp)
        assert "*" not in csp and "http" not in csp and "unsafe-eval" not in csp
        # The page's own script still runs (it fills in the model's name) ...
        expect(page.locator("#title")).to_have_text("edge-qwen · qwen3-test", timeout=TIMEOUT_MS)
        # ... but markup slipped into the DOM runs nothing: no inline handler, no javascript: URL.
        page.evaluate(
            "() => { document.getElementById('log').innerHTML ="
            " '<img src=x onerror=alert(1)><a id=jl href=\"javascript:alert(2)\">x</a>'; }"
        )
        page.click("#jl", timeout=TIMEOUT_MS)
        page.wait_for_timeout(500)
        assert seen["dialog"] == [] and seen["pageerror"] == []
        assert len(seen["csp"]) >= 2, seen  # both refusals were reported by the browser
        page.close()
