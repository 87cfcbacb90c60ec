"""The web chat page in a real headless Chromium on a real model: streamed answer, thinking
block, stop button, hostile model output, the policy, conversations that outlive a reload
and a server restart. The rendering details, over a fake engine: test_webpage_render.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.support.browser import DESKTOP, QUIET, TIMEOUT_MS, chromium, needs_chromium, watch
from tests.support.live_server import free_port, serving
from tests.support.slow import slow_fixture

pytestmark = needs_chromium
# The page's Content-Security-Policy forbids eval, so waits use locators, never JS strings.


@slow_fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


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
        assert (answer.text_content() or "").strip() == "Hello world"
        assert answer.locator("p").text_content() == "Hello world"  # rendered as Markdown
        assert page.locator("details.think .reasoning").text_content() == "Let me think"
        assert (
            page.locator("details.think:not([open]) summary")
            .text_content()
            .startswith("Thought for ")
        )
        assert "8 tokens" in (page.locator(".msg.assistant .stats").text_content() or "")
        page.uncheck("#think")  # thinking off: no thinking block on the next answer
        page.fill("#input", "Again")
        page.press("#input", "Enter")
        expect(page.locator(".msg.assistant .stats")).to_have_count(2, timeout=TIMEOUT_MS)
        last = page.locator(".msg.assistant").last
        assert (last.locator(".text").text_content() or "").strip() == "Hello world"
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


def test_model_output_is_text_never_markup(browser: Any, hostile_gguf: Path) -> None:
    from tests.support.scripted import HOSTILE_ANSWER, HOSTILE_THINKING

    typed = "<img src=y onerror=alert(4)><b>bold</b>"
    with serving(hostile_gguf) as (url, _):
        page = browser.new_page()
        seen = watch(page, url)
        page.goto(url + "/", timeout=TIMEOUT_MS)
        page.fill("#input", typed)
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.assistant .stats", timeout=TIMEOUT_MS)
        page.wait_for_timeout(500)  # an injected onerror fires after the failed image load
        log = page.locator("#log")
        # Markdown, but the markup in it is shown as the text it is.
        answer = page.locator(".msg.assistant .text")
        assert (answer.text_content() or "").strip() == HOSTILE_ANSWER
        assert answer.locator("p").count() == 1
        assert page.locator("details.think .reasoning").text_content() == HOSTILE_THINKING
        assert page.locator(".msg.user .text").text_content() == typed
        assert log.locator("img, script, a, b, iframe, svg, object").count() == 0
        assert page.evaluate("() => window.pwned") is None
        assert seen == QUIET
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
        seen = watch(page, url)
        response = page.goto(url + "/", timeout=TIMEOUT_MS)
        csp = response.headers["content-security-policy"]
        for rule in (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'none'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ):
            assert rule in csp, (rule, csp)
        assert "*" not in csp and "http" not in csp and "unsafe" not in csp
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


def test_conversations_outlive_a_reload_and_a_server_restart(
    browser: Any, gguf_of: Callable[[str, str], Path]
) -> None:
    gguf, port = gguf_of("scripted", "Q8_0"), free_port()
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    with serving(gguf, port=port) as (url, _):
        page.goto(url + "/", timeout=TIMEOUT_MS)
        ask(page, "Hi", 1)
        page.click("#new")
        ask(page, "Again", 1)
        page.click("#open-settings")
        page.fill("#conv-title", "Renamed")
        page.fill("#system", "Be brief.")  # kept on change, when the field loses focus
        page.click("#close-settings")
        page.reload(timeout=TIMEOUT_MS)
        titles = page.locator("#conv-list button.conv")
        expect(titles).to_have_text(["Renamed", "Hi"], timeout=TIMEOUT_MS)
        expect(page.locator("#conv-list [aria-current=true]")).to_have_text("Renamed")
        restored = page.locator(".msg.assistant")
        expect(restored).to_have_count(1)
        assert restored.locator(".text p").text_content() == "Hello world"
        assert restored.locator(".reasoning").text_content() == "Let me think"
        assert "8 tokens" in (restored.locator(".stats").text_content() or "")
    # The server is gone: a message waits for it, and goes through once it is back.
    page.fill("#input", "Still there?")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant .notice")).to_contain_text(
        "Can't reach the server", timeout=TIMEOUT_MS
    )
    with serving(gguf, port=port) as (url, _):
        expect(page.locator(".msg.assistant .stats")).to_have_count(2, timeout=60_000)
        assert page.locator(".msg.assistant .error").count() == 0
        page.reload(timeout=TIMEOUT_MS)
        expect(page.locator(".msg.user .text")).to_have_text(["Again", "Still there?"])
        for title, messages, system in (("Hi", ["Hi"], ""), ("Renamed", ["Again"], "Be brief.")):
            page.click(f"#conv-list button.conv >> text={title}")
            expect(page.locator(".msg.user .text").first).to_have_text(messages[0])
            page.click("#open-settings")
            assert page.locator("#system").input_value() == system  # each its own
            page.click("#close-settings")
    context.close()


def ask(page: Any, text: str, answers: int) -> None:
    """Send `text` and wait until `answers` answers are finished in the conversation."""
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant .stats")).to_have_count(answers, timeout=TIMEOUT_MS)
