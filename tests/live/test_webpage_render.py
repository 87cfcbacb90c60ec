"""The web chat page in headless Chromium over a fake engine behind a real uvicorn (the
real server, SSE and all, with answers written here): Markdown while it streams, hostile
answers, regenerate and edit, a busy or keyed server, the server's states, phones and
themes. The page on a real model: test_webpage.py."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import expect

from edge.config import Settings
from edge.server import create_app
from tests.support.browser import DESKTOP, PHONE, QUIET, TIMEOUT_MS, chromium, needs_chromium, watch
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import running
from tests.support.seam import qwen_template
from tests.support.slow import slow_fixture

pytestmark = needs_chromium


@slow_fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@contextmanager
def fake_server(engine: FakeEngine, options: Settings | None = None) -> Iterator[str]:
    app = create_app("qwen3-test", lambda: (engine, qwen_template()), options)
    try:
        with running(app) as url:
            yield url
    finally:
        engine.close()


def pieces(text: str, size: int = 6) -> list[str]:
    """`text` as the engine would stream it: small pieces."""
    return [text[i : i + size] for i in range(0, len(text), size)]


class Hold:
    """A FakeEngine gate that lets `n` pieces through, then holds until `set()`."""

    def __init__(self, n: int) -> None:
        self.n, self.passed, self.released = n, 0, threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if self.passed >= self.n:
            self.released.wait(timeout)
        self.passed += 1
        return True

    def set(self) -> None:
        self.released.set()


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def done(page: Any, answers: int) -> None:
    expect(page.locator(".msg.assistant .stats")).to_have_count(answers, timeout=TIMEOUT_MS)


FIRST = "## Steps\n\n- one\n- two\n\n"
CODE = "```python\ndef f(x):\n    return x + 1\n"
REST = "```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nDone.\n"


def test_markdown_renders_while_streaming_and_finished_blocks_stay(browser: Any) -> None:
    engine = FakeEngine()
    engine.enqueue(pieces(FIRST + CODE + REST))
    engine.gate = Hold(len(pieces(FIRST + CODE)))  # type: ignore[assignment]
    with fake_server(engine) as url:
        context = browser.new_context(viewport=DESKTOP)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.goto(url + "/", timeout=TIMEOUT_MS)
        send(page, "Steps?")
        answer = page.locator(".msg.assistant .text")
        # Held mid code block: what has come is already rendered, and highlighted.
        expect(answer.locator("pre code")).to_contain_text("return x + 1", timeout=TIMEOUT_MS)
        assert answer.locator("h2").text_content() == "Steps"
        expect(answer.locator("ul > li")).to_have_count(2)
        expect(answer.locator("pre code .hljs-keyword").first).to_have_text("def")
        assert page.locator("#stop").is_visible() and answer.locator("table").count() == 0
        # A finished block is rendered once: the same element stays to the end.
        answer.locator("h2").evaluate("(el) => { el.seenBefore = true; }")
        engine.gate.set()
        done(page, 1)
        assert answer.locator("h2").evaluate("(el) => el.seenBefore") is True
        expect(answer.locator("table th")).to_have_text(["a", "b"])
        assert (answer.locator("p").last.text_content() or "") == "Done."
        assert answer.locator(".tail").count() == 0  # the streaming wrapper is gone
        html = answer.inner_html()
        answer.locator("button.copy").click()
        assert page.evaluate("() => navigator.clipboard.readText()") == (
            "def f(x):\n    return x + 1"
        )
        # The same answer after a reload is rendered the same way.
        page.reload(timeout=TIMEOUT_MS)
        done(page, 1)
        assert page.locator(".msg.assistant .text").inner_html() == html
        context.close()


# Each one on its own, and the lot in one answer: markup, script URLs, images, a page's
# worth of one line, deep nesting. None may run, load, restyle or reach anything.
HOSTILE = [
    "<script>window.pwned = 1</script>",
    '<img src=x onerror="window.pwned = 2">',
    '<iframe srcdoc="<script>parent.pwned = 3</script>"></iframe>',
    '<svg onload="window.pwned = 4"><circle r=9></circle></svg>',
    "<math><mtext><style><img src=x onerror=window.pwned=5></style></mtext></math>",
    'Inline <a href="javascript:window.pwned=6">html link</a> and <b onclick="x()">b</b>',
    "[md link](javascript:window.pwned=7) [case](JaVaScRiPt:window.pwned=8)",
    "[entity](&#106;avascript:window.pwned=9) [spaced]( javascript:window.pwned=10)",
    "[data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQucHduZWQ9MTE8L3NjcmlwdD4=)",
    "![pixel](http://127.0.0.1:9/pixel.png) ![inline](data:image/png;base64,iVBORw0KGgo=)",
    "<form action=/v1/models><button>go</button></form><style>body{display:none}</style>",
    '<div class="msg user" style="position:fixed;inset:0">spoof</div><base href=//evil/>',
    "<object data=/x></object><embed src=/x><link rel=stylesheet href=/x>",
    "<meta http-equiv=refresh content=0>",
    "```html\n<script>window.pwned = 12</script>\n```",
    "[fine](https://example.com/a) <https://example.com/b> mail@example.com",
    "x" * 20_000,
    ">" * 300 + " deep quote",
    "\n".join("  " * i + "- level" for i in range(100)),
]
FORBIDDEN = "script, img, iframe, svg, math, style, form, object, embed, link, meta, base, input"


def test_hostile_answers_stay_inert(browser: Any) -> None:
    engine = FakeEngine()
    text = "\n\n".join(HOSTILE)
    engine.enqueue(["<think>", "\n<img src=x onerror=window.pwned=13>\n", "</think>", "\n\n"])
    engine.enqueue(pieces(text, 40))
    with fake_server(engine) as url:
        page = browser.new_page(viewport=PHONE)
        seen = watch(page, url)
        page.goto(url + "/", timeout=TIMEOUT_MS)
        page.uncheck("#think")
        send(page, "Thinking only")
        done(page, 1)
        send(page, "Be hostile")
        done(page, 2)
        expect(page.locator(".msg.assistant .text").last).to_contain_text("deep quote")
        page.wait_for_timeout(500)  # an injected onerror would fire after a failed load
        inert(page, seen)
        assert page.locator(".reasoning").first.text_content() == (
            "<img src=x onerror=window.pwned=13>"
        )
        # What is kept in the browser is shown again through the same gate.
        page.reload(timeout=TIMEOUT_MS)
        done(page, 2)
        page.wait_for_timeout(500)
        inert(page, seen)
        page.close()


def inert(page: Any, seen: dict[str, list[str]]) -> None:
    log = page.locator("#log")
    answer = page.locator(".msg.assistant .text").last
    assert log.locator(FORBIDDEN).count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert seen == QUIET
    # Links: only the web's and mail's, opened apart from the page.
    links = answer.locator("a").evaluate_all(
        "(els) => els.map((a) => [a.getAttribute('href'), a.target, a.rel])"
    )
    assert ["https://example.com/a", "_blank", "noopener noreferrer"] in links
    assert ["http://127.0.0.1:9/pixel.png", "_blank", "noopener noreferrer"] in links
    for href, target, rel in links:
        assert re.match(r"^(https?://|mailto:)", href or ""), href
        assert (target, rel) == ("_blank", "noopener noreferrer")
    # No handlers, no style, no classes of the page's own.
    attributes = answer.locator("*").evaluate_all(
        "(els) => els.flatMap((e) => [...e.attributes].map((a) => [a.name, a.value]))"
    )
    for name, value in attributes:
        assert not name.startswith("on") and name != "style", (name, value)
        if name == "class":
            for cls in value.split():
                assert cls.startswith(("hljs", "language-", "code", "copy")) or cls.endswith("_"), (
                    cls
                )
    assert "<script>window.pwned = 12</script>" in (answer.locator("pre code").text_content() or "")
    # Nothing scrolls sideways, not even a 20,000-character line.
    widths = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth,"
        " document.getElementById('log').scrollWidth, document.getElementById('log').clientWidth]"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths


def test_regenerate_and_edit_resend_the_last_message(browser: Any) -> None:
    engine = FakeEngine()
    for word in ("first", "second", "third"):
        engine.enqueue([word])
    with fake_server(engine) as url:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(url + "/", timeout=TIMEOUT_MS)
        page.click("#open-settings")
        page.fill("#system", "Be brief.")
        page.fill("#temperature", "0.3")
        page.click("#close-settings")
        send(page, "Question")
        done(page, 1)
        page.click("[data-action=regenerate]")
        expect(page.locator(".msg.assistant .text")).to_have_text("second", timeout=TIMEOUT_MS)
        done(page, 1)
        regenerated = bytes(engine.jobs[1].prompt).decode()
        assert regenerated.count("Question") == 1 and "first" not in regenerated
        assert "Be brief." in regenerated and engine.jobs[1].params.temperature == 0.3
        page.click("[data-action=edit]")
        page.fill("form.edit textarea", "Changed")
        page.press("form.edit textarea", "Enter")
        expect(page.locator(".msg.assistant .text")).to_have_text("third", timeout=TIMEOUT_MS)
        expect(page.locator(".msg.user .text")).to_have_text(["Changed"])
        edited = bytes(engine.jobs[2].prompt).decode()
        assert "Changed" in edited and "Question" not in edited and "second" not in edited
        assert len(engine.jobs) == 3
        page.close()


KEY = "household-key-0123456789"


def test_the_key_is_asked_once_and_a_busy_server_is_waited_out(browser: Any) -> None:
    engine = FakeEngine()
    engine.enqueue(["held"])
    engine.enqueue(["after the wait"])
    with fake_server(engine, Settings(api_key=KEY, max_queue=0)) as url:
        page = browser.new_page(viewport=PHONE)
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(url + "/", timeout=TIMEOUT_MS)
        expect(page.locator("#status")).to_have_attribute("data-state", "key", timeout=TIMEOUT_MS)
        send(page, "Hello")
        expect(page.locator("#settings")).to_be_visible(timeout=TIMEOUT_MS)  # asks for it
        assert "API key" in (page.locator(".msg.assistant .error").text_content() or "")
        page.fill("#key", KEY)
        page.click("#close-settings")
        # Another client holds the one slot, with no room to wait: the page gets 429.
        engine.gate.clear()
        held = threading.Thread(target=_hold_a_slot, args=(url,), daemon=True)
        held.start()
        while not engine.jobs:
            page.wait_for_timeout(50)
        page.click("[data-action=regenerate]")
        expect(page.locator(".msg.assistant .notice")).to_contain_text("Busy", timeout=TIMEOUT_MS)
        expect(page.locator("#status")).to_have_attribute("data-state", "busy")
        engine.gate.set()  # the other answer ends; the page's retry goes through
        expect(page.locator(".msg.assistant .text")).to_have_text(
            "after the wait", timeout=TIMEOUT_MS
        )
        held.join(timeout=TIMEOUT_MS / 1000)
        page.reload(timeout=TIMEOUT_MS)  # kept: not asked again
        expect(page.locator("#title")).to_have_text("edge-qwen · qwen3-test", timeout=TIMEOUT_MS)
        assert page.locator("#status").get_attribute("data-state") == "ok"
        assert not [u for u in urls if KEY in u] and KEY not in page.url
        page.click("#open-settings")
        page.click("#forget-key")
        expect(page.locator("#status")).to_have_attribute("data-state", "key")
        page.close()


def _hold_a_slot(url: str) -> None:
    import httpx2 as httpx

    body = {"model": "q", "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as r:
        for _ in r.iter_bytes():
            pass


def test_the_page_says_what_the_server_is_doing(browser: Any) -> None:
    """Asleep, loading, failed, gone: /health's answers in words, and the wake-up's cost."""
    engine = FakeEngine()
    with fake_server(engine, Settings(idle=1.0)) as url:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(url + "/", timeout=TIMEOUT_MS)
        status = page.locator("#status")
        expect(status).to_have_attribute("data-state", "ok", timeout=TIMEOUT_MS)
        page.wait_for_timeout(1500)  # past the idle time: the model sleeps
        page.reload(timeout=TIMEOUT_MS)
        expect(status).to_have_attribute("data-state", "asleep", timeout=TIMEOUT_MS)
        expect(status).to_contain_text("wakes")
        send(page, "Wake up")
        done(page, 1)
        assert "woke the model in" in (page.locator(".msg.assistant .stats").text_content() or "")
        answers = {
            "loading": (503, {"status": "loading", "detail": None}),
            "error": (503, {"status": "error", "detail": "out of memory"}),
        }
        for state, (code, body) in answers.items():
            page.route("**/health", _answer(code, body))
            page.reload(timeout=TIMEOUT_MS)
            expect(status).to_have_attribute("data-state", state, timeout=TIMEOUT_MS)
            page.unroute("**/health")
        expect(status).to_contain_text("out of memory")
        page.route("**/health", lambda route: route.abort())
        page.reload(timeout=TIMEOUT_MS)
        expect(status).to_have_attribute("data-state", "unreachable", timeout=TIMEOUT_MS)
        page.unroute("**/health")  # it keeps asking, and sees the server back (asleep by now)
        back = re.compile("^(ok|asleep)$")
        expect(status).to_have_attribute("data-state", back, timeout=TIMEOUT_MS)
        page.close()


def _answer(status: int, body: dict[str, Any]) -> Any:
    """A route handler that answers with `status` and the JSON `body`."""
    return lambda route: route.fulfill(status=status, body=json.dumps(body))


def test_a_phone_in_light_and_dark(browser: Any) -> None:
    """360 px: nothing scrolls sideways, the controls fit a thumb, the list is a drawer;
    dark follows the system; the main text colours meet WCAG AA (4.5:1)."""
    wide = "| " + " | ".join(f"column {i}" for i in range(12)) + " |\n|" + "---|" * 12 + "\n"
    answer = "Text with `code` and a [link](https://example.com).\n\n" + wide
    answer += "\n```python\nprint('" + "a" * 300 + "')\n```\n"
    for scheme in ("light", "dark"):
        engine = FakeEngine()
        engine.enqueue(pieces(answer, 30))
        with fake_server(engine) as url:
            context = browser.new_context(viewport=PHONE, color_scheme=scheme, has_touch=True)
            page = context.new_page()
            page.goto(url + "/", timeout=TIMEOUT_MS)
            send(page, "Wide things")
            done(page, 1)
            widths = page.evaluate(
                "() => [document.scrollingElement.scrollWidth, window.innerWidth,"
                " document.getElementById('log').scrollWidth]"
            )
            assert widths[0] <= PHONE["width"] and widths[2] <= PHONE["width"], widths
            for control in ("#menu", "#open-settings", "#send", "#input", "button.copy"):
                box = page.locator(control).first.bounding_box()
                assert box and box["height"] >= 44 and box["width"] >= 44, (control, box)
            assert page.locator("#side").bounding_box()["x"] < 0  # a drawer, closed
            page.click("#menu")
            expect(page.locator("#conv-list button.conv")).to_be_in_viewport()
            page.click("#conv-list button.conv")  # choosing one closes it
            colours = page.evaluate(COLOURS)
            background = luminance(colours["bg"])
            assert (background > 0.8) if scheme == "light" else (background < 0.05), colours
            for name in ("fg", "dim", "link", "code"):
                assert contrast(colours[name], colours["bg"]) >= 4.5, (scheme, name, colours)
            for name in ("builtin", "string", "label"):
                assert contrast(colours[name], colours["codebg"]) >= 4.5, (scheme, name)
            context.close()


COLOURS = """() => {
  const c = (sel, prop = 'color') => getComputedStyle(document.querySelector(sel))[prop];
  return { bg: c('body', 'backgroundColor'), fg: c('body'), dim: c('.stats'),
           link: c('.md a'), code: c('.md p code'), codebg: c('.md .code', 'backgroundColor'),
           builtin: c('.hljs-built_in'), string: c('.hljs-string'), label: c('.code-bar') };
}"""


def luminance(css: str) -> float:
    """WCAG relative luminance of an `rgb(r, g, b)` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
