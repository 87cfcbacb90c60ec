"""Security defaults that need no model: which binds need a key and what a key may be
(`server_key`), the key compared in constant time (a real uvicorn in a thread, no model),
and the web page's policy (no inline code). On real servers with real clients:
tests/live/test_security.py.
"""

from __future__ import annotations

import hmac
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn

from edge.config import Settings
from edge.errors import UsageError
from edge.server import create_app
from edge.server.lan import server_key
from edge.server.web import CSP
from tests.support.live_server import free_port

WAIT = 60.0
KEY = "k3y-Zq8vR2mW5tY7uP0aS4dF6gH9jL1x"  # 32 characters


# --- loopback unless told otherwise -----------------------------------------------------


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_needs_no_key(bind: str, tmp_path: Path) -> None:
    said: list[str] = []
    assert server_key(bind, None, lan=False, no_auth=False, home=tmp_path, say=said.append) is None
    assert said == [] and not (tmp_path / "api_key").exists()


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.0.2.7", "fe80::1", "", "LOCALHOST"])
@pytest.mark.parametrize("key", [None, "", "   "])
def test_off_loopback_without_a_key_is_refused(bind: str, key: str | None, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="an API key is required") as caught:
        server_key(bind, key, lan=False, no_auth=False, home=tmp_path, say=print)
    assert "--no-auth" in str(caught.value.hint)


def test_no_auth_serves_off_loopback_with_a_warning(tmp_path: Path) -> None:
    said: list[str] = []
    assert server_key("::", None, lan=False, no_auth=True, home=tmp_path, say=said.append) is None
    assert len(said) == 1 and "WITHOUT an API key" in said[0]
    # A key, when given, wins over --no-auth: it is never silently dropped.
    assert server_key("::", KEY, lan=False, no_auth=True, home=tmp_path, say=said.append) == KEY


def test_lan_tightens_a_readable_stored_key(tmp_path: Path) -> None:
    stored = tmp_path / "api_key"
    stored.write_text(KEY + "\n")
    stored.chmod(0o644)
    said: list[str] = []
    assert (
        server_key("0.0.0.0", None, lan=True, no_auth=False, home=tmp_path, say=said.append) == KEY
    )
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert len(said) == 1 and "0600" in said[0] and KEY not in said[0]


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_keys_are_what_a_header_can_carry(bind: str, tmp_path: Path) -> None:
    """Bugs fixed: a padded key could never match (HTTP trims header values), and a
    non-ASCII one never did (the Guard compares bytes); both locked everyone out."""
    kw: dict[str, Any] = {"lan": False, "no_auth": False, "home": tmp_path, "say": print}
    assert server_key(bind, f"  {KEY}\n", **kw) == KEY
    for bad in ("clé-secrète", "tab\tinside", "new\nline"):
        with pytest.raises(UsageError, match="printable ASCII"):
            server_key(bind, bad, **kw)


# --- only the exact key opens /v1 -------------------------------------------------------


@contextmanager
def in_thread(options: Settings, log_level: str = "warning") -> Iterator[str]:
    """A real uvicorn in a thread around an app whose model never loads (/v1/models still works)."""

    def load() -> Any:
        raise RuntimeError("no model in this test")

    app = create_app("no-model", load, options)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level=log_level)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    deadline = time.monotonic() + WAIT
    while not server.started:  # /health stays 503 here: the model never loads
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT)


def test_the_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check goes through hmac.compare_digest, the full token against the full key,
    for both headers a key may come in (Authorization: Bearer, any case of the scheme, and
    Anthropic's x-api-key), every time (we assert the path taken; timing itself is not
    measured)."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("edge.server.guard.hmac.compare_digest", spy)
    with in_thread(Settings(api_key=KEY)) as url:
        for value in (f"Bearer {KEY[:5]}", f"bearer {KEY}"):
            httpx.get(f"{url}/v1/models", headers={"authorization": value}, timeout=WAIT)
        httpx.get(f"{url}/v1/models", headers={"x-api-key": KEY[:5]}, timeout=WAIT)
    key = KEY.encode()
    # Both headers each time, the x-api-key one even when the bearer token already matched.
    assert calls == [
        (KEY[:5].encode(), key),
        (b"", key),
        (key, key),
        (b"", key),
        (b"", key),
        (KEY[:5].encode(), key),
    ]


# --- the web page's policy ---------------------------------------------------------------


def test_page_runs_only_our_own_files() -> None:
    """No inline script or style anywhere in the page, so the policy needs no
    'unsafe-inline': markup injected by a future bug could not run a handler or restyle
    the page. Scripts and styles come from our own /assets/ only."""
    page = (resources.files("edge.server") / "static" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S) == [
        (' type="module" src="{assets}/app.js"', "")
    ]
    assert "<style" not in page and not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page, re.I), "an inline event handler"
    assert "javascript:" not in page.lower()
    for src in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert src.startswith("{assets}/"), src


def test_the_policy_has_no_inline_or_remote_allowance() -> None:
    rules = dict(rule.strip().split(" ", 1) for rule in CSP.split(";"))
    assert rules == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "connect-src": "'self'",
        "img-src": "'none'",  # model output cannot fetch a pixel, not even from us
        "font-src": "'none'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
