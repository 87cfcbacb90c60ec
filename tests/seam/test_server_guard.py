"""The Guard and CORS, fast (fake engine, no uvicorn): the API key, body size and body
deadline refusals, and the CORS headers a browser needs, also on refusals. The same run
against a real uvicorn: tests/live/test_security.py (raw sockets) and
tests/unit/test_security.py (constant-time compare)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from edge.config import Settings
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, run

KEY = "sk-test-K3y"
ORIGIN = "http://app.example"
LIMIT = 1000
CHAT = "/v1/chat/completions"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def requests(options: Settings, *calls: tuple[str, str, dict[str, Any]]) -> Any:
    """(method, path, httpx keyword arguments) each, in order, on one app."""
    engine = FakeEngine()

    async def go() -> list[httpx.Response]:
        async with client_of(engine, options) as (client, _):
            return [await client.request(m, path, **kw) for m, path, kw in calls]

    return run(go)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer("wrong"), 401),
        ({"authorization": KEY}, 401),
        ({"x-api-key": "wrong"}, 401),
        ({"x-api-key": f"Bearer {KEY}"}, 401),
        ({"x-api-key": "wrong", **bearer(KEY)}, 200),  # one right key is enough
        (bearer(KEY), 200),
        ({"authorization": f"bearer {KEY}"}, 200),  # the scheme is case-insensitive
        ({"authorization": f"BEARER  {KEY} "}, 200),
        ({"authorization": f"Basic {KEY}"}, 401),
        ({"authorization": f"Bearer {KEY}x"}, 401),
        ({"x-api-key": KEY}, 200),  # Anthropic's clients send it so
    ],
    ids=[
        "missing",
        "wrong",
        "no-bearer",
        "x-wrong",
        "x-bearer",
        "one-right",
        "right",
        "lower-case",
        "upper-case",
        "basic",
        "longer",
        "x-right",
    ],
)
def test_the_api_needs_the_exact_key(headers: dict[str, str], status: int) -> None:
    chat, models = requests(
        Settings(api_key=KEY),
        ("POST", CHAT, {"json": {"messages": HI}, "headers": headers}),
        ("GET", "/v1/models", {"headers": headers}),
    )
    assert chat.status_code == models.status_code == status
    if status == 401:
        assert chat.json() == {
            "error": {
                "message": "Missing or wrong API key. "
                "Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                "type": "authentication_error",
                "param": None,
                "code": None,
            }
        }


def test_the_page_health_and_metrics_stay_open_without_the_key() -> None:
    page, health, metrics = requests(
        Settings(api_key=KEY),
        ("GET", "/", {}),
        ("GET", "/health", {}),
        ("GET", "/metrics", {}),
    )
    assert page.status_code == 200 and page.text.startswith("<!doctype html>")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.status_code == 200 and "edge_requests_total" in metrics.text


def test_requests_are_counted_by_api_and_status() -> None:
    """Each API has its series; a path outside them is "other", so a client probing paths
    cannot grow the number of series."""
    *_, metrics = requests(
        Settings(),
        ("POST", "/v1/messages", {"json": {}}),
        ("POST", "/v1/messages/count_tokens", {"json": {}}),
        ("POST", "/v1/responses", {"json": {}}),
        ("POST", "/v1/completions", {"json": {}}),
        ("GET", "/v1/nothing-here-1", {}),
        ("GET", "/v1/nothing-here-2", {}),
        ("GET", "/metrics", {}),
    )
    for api in ("messages", "count_tokens", "responses", "completions"):
        assert f'edge_requests_total{{api="{api}",status="400"}} 1' in metrics.text, api
    assert 'edge_requests_total{api="other",status="404"} 2' in metrics.text
    assert "nothing-here" not in metrics.text


def test_refusals_are_counted_by_status() -> None:
    *_, metrics = requests(
        Settings(api_key=KEY, max_body_bytes=LIMIT),
        ("GET", "/v1/models", {}),
        ("GET", "/v1/models", {}),
        ("POST", CHAT, {"content": b" " * (LIMIT + 1), "headers": bearer(KEY)}),
        ("GET", "/metrics", {}),
    )
    assert 'edge_requests_total{api="models",status="401"} 2' in metrics.text
    assert 'edge_requests_total{api="chat_completions",status="413"} 1' in metrics.text


def preflight(origin: str) -> tuple[str, str, dict[str, Any]]:
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    return ("OPTIONS", CHAT, {"headers": headers})


def test_cors_preflight_of_a_named_origin_passes_without_the_key() -> None:
    ok, other = requests(
        Settings(api_key=KEY, cors_origins=(ORIGIN,)),
        preflight(ORIGIN),
        preflight("http://evil.example"),
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert ok.headers["access-control-allow-methods"] == "GET, POST"
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in ok.headers
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_cors_preflight_allows_anthropic_clients_headers() -> None:
    asked = "x-api-key, anthropic-version, anthropic-beta, content-type"
    headers = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": asked,
    }
    [ok] = requests(
        Settings(api_key=KEY, cors_origins=(ORIGIN,)),
        ("OPTIONS", "/v1/messages", {"headers": headers}),
    )
    assert ok.status_code == 200, ok.text
    allowed = ok.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in ("x-api-key", "anthropic-version", "anthropic-beta"))


def test_cors_headers_come_on_answers_and_on_refusals() -> None:
    origin = {"origin": ORIGIN}
    refused, too_big, answered = requests(
        Settings(api_key=KEY, cors_origins=(ORIGIN,), max_body_bytes=LIMIT),
        ("POST", CHAT, {"json": {"messages": HI}, "headers": origin}),
        ("POST", CHAT, {"content": b" " * (LIMIT + 1), "headers": {**origin, **bearer(KEY)}}),
        ("POST", CHAT, {"json": {"messages": HI}, "headers": {**origin, **bearer(KEY)}}),
    )
    assert (refused.status_code, too_big.status_code, answered.status_code) == (401, 413, 200)
    for r in (refused, too_big, answered):
        assert r.headers["access-control-allow-origin"] == ORIGIN


def test_cors_is_closed_unless_origins_are_named() -> None:
    pre, chat = requests(
        Settings(),
        preflight(ORIGIN),
        ("POST", CHAT, {"json": {"messages": HI}, "headers": {"origin": ORIGIN}}),
    )
    assert pre.status_code == 405  # no CORS middleware: OPTIONS is just a method not allowed
    assert chat.status_code == 200
    assert not any(h.startswith("access-control-") for h in (*pre.headers, *chat.headers))


def test_a_body_announced_over_the_limit_is_refused_unread() -> None:
    engine = FakeEngine()
    reads = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal reads
        reads += 1
        yield b"{}"

    async def go() -> httpx.Response:
        async with client_of(engine, Settings(max_body_bytes=LIMIT)) as (client, _):
            headers = {"content-length": str(LIMIT + 1), "content-type": "application/json"}
            request = client.build_request("POST", CHAT, content=body(), headers=headers)
            return await client.send(request)

    r = run(go)
    assert r.status_code == 413
    assert r.json() == {
        "error": {
            "message": f"The request body is over {LIMIT} bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert reads == 0 and engine.jobs == []


def test_a_chunked_body_is_cut_at_the_limit() -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10):
            sent += 1
            yield b" " * 300

    too_big, at_limit = requests(
        Settings(max_body_bytes=LIMIT),
        ("POST", CHAT, {"content": body()}),  # no Content-Length: chunked
        ("POST", CHAT, {"content": b" " * LIMIT, "headers": {"content-type": "application/json"}}),
    )
    assert too_big.status_code == 413 and too_big.headers["connection"] == "close"
    assert sent == 4  # the refusal came at the first chunk over the limit; the rest stayed
    assert too_big.json()["error"]["message"] == f"The request body is over {LIMIT} bytes."
    # At the limit the body is read; blanks are no JSON object, so it is a 400, not a 413.
    assert at_limit.status_code == 400


def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"messages": '
        await asyncio.sleep(1)
        yield b"[]}"

    (late,) = requests(
        Settings(body_timeout_s=0.2),
        ("POST", CHAT, {"content": trickle(), "headers": {"content-type": "application/json"}}),
    )
    assert late.status_code == 408 and late.headers["connection"] == "close"
    assert late.json()["error"] == {
        "message": "The request body did not arrive within 0.2 seconds.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_ollamas_api_paths_need_the_key_too() -> None:
    # /api/* is Ollama's API; its clients send the key as a bearer token, like OpenAI's.
    refused, passed = requests(
        Settings(api_key=KEY),
        ("GET", "/api/tags", {}),
        ("GET", "/api/tags", {"headers": bearer(KEY)}),
    )
    assert refused.status_code == 401
    assert passed.status_code != 401
