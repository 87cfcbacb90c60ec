"""Headless Chromium for the web page's tests: Debian's browser driven by Playwright,
and a watch for anything that would betray injected code running."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium and sets this, so a missing browser fails there instead of skipping.
if CHROMIUM is None and os.environ.get("EDGE_QWEN_REQUIRE_BROWSER"):
    raise RuntimeError("EDGE_QWEN_REQUIRE_BROWSER is set but no chromium is installed")
needs_chromium = pytest.mark.skipif(
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
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1200, "height": 800}


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser) for a module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Any, origin: str) -> dict[str, list[str]]:
    """Everything that betrays running injected code: dialogs, page errors, CSP refusals,
    and requests anywhere but `origin` (the page's server, "http://host:port")."""
    seen: dict[str, list[str]] = {"dialog": [], "pageerror": [], "csp": [], "elsewhere": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialog"].append(dialog.message)
        dialog.dismiss()

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            seen["csp"].append(msg.text)

    def on_request(request: Any) -> None:
        if request.url.split("/", 3)[:3] != origin.split("/", 3)[:3]:
            seen["elsewhere"].append(request.url)

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["pageerror"].append(str(exc)))
    page.on("console", on_console)
    page.on("request", on_request)
    return seen


QUIET: dict[str, list[str]] = {"dialog": [], "pageerror": [], "csp": [], "elsewhere": []}
