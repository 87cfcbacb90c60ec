"""The wire, byte for byte: the OpenAPI schema and the bodies of a fixed set of requests to
every API (streamed and not, thinking, tool calls, errors), over the fake engine.

The goldens under tests/seam/golden/ were written from the server as it was before its files
moved into a folder per API; a refactor that changes one byte of what a client sees fails
here. Random ids and clock readings are made stable first (ids from a counter, times
replaced by 0). After a change to the wire that is meant, rewrite them with
`EDGE_QWEN_UPDATE_GOLDEN=1 python -m pytest tests/seam/test_wire_golden.py` and read the
diff.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_engine import FakeEngine
from tests.support.seam import client_of, run

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("EDGE_QWEN_UPDATE_GOLDEN") == "1"

THINKING = ["<think>", "\nLet me", " see", "</think>", "\n\n", "Hel", "lo ✓"]
TOOL_CALL = ["<tool_call>", '\n{"name": "get_time", "arguments": {}}\n', "</tool_call>"]
TOOL = {"name": "get_time", "description": "The time now", "parameters": {"type": "object"}}
OPENAI_TOOLS = [{"type": "function", "function": TOOL}]
ANTHROPIC_TOOLS = [{"name": "get_time", "description": "now", "input_schema": {"type": "object"}}]
RESPONSES_TOOLS = [{"type": "function", **TOOL}]
HI = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"

# name: (method, path, body, the fake's answer (pieces, finish reason) or None)
CASES: dict[str, tuple[str, str, dict[str, Any] | None, tuple[list[str], str] | None]] = {
    "chat": ("POST", CHAT, {"messages": HI}, (THINKING, "stop")),
    "chat-stream": (
        "POST",
        CHAT,
        {"messages": HI, "stream": True, "stream_options": {"include_usage": True}},
        (THINKING, "stop"),
    ),
    "chat-inline": (
        "POST",
        CHAT,
        {"messages": HI, "stream": True, "reasoning_format": "inline"},
        (THINKING, "length"),
    ),
    "chat-tool": ("POST", CHAT, {"messages": HI, "tools": OPENAI_TOOLS}, (TOOL_CALL, "stop")),
    "chat-tool-stream": (
        "POST",
        CHAT,
        {"messages": HI, "tools": OPENAI_TOOLS, "stream": True},
        (TOOL_CALL, "stop"),
    ),
    "chat-bad": ("POST", CHAT, {"messages": HI, "temperature": "hot"}, None),
    "chat-empty": ("POST", CHAT, {"messages": []}, None),
    "completion": ("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 3}, (["a"], "stop")),
    "completion-stream": (
        "POST",
        "/v1/completions",
        {"prompt": ["Once", "Twice"], "stream": True, "echo": True, "stop": ["z"]},
        (["up", "on"], "stop"),
    ),
    "messages": ("POST", MESSAGES, {"messages": HI, "max_tokens": 64}, (THINKING, "stop")),
    "messages-stream": (
        "POST",
        MESSAGES,
        {
            "messages": HI,
            "max_tokens": 64,
            "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
        (THINKING, "length"),
    ),
    "messages-tool-stream": (
        "POST",
        MESSAGES,
        {"messages": HI, "max_tokens": 64, "tools": ANTHROPIC_TOOLS, "stream": True},
        (TOOL_CALL, "stop"),
    ),
    "messages-bad": ("POST", MESSAGES, {"messages": HI}, None),
    "count-tokens": ("POST", MESSAGES + "/count_tokens", {"messages": HI}, None),
    "responses": ("POST", "/v1/responses", {"input": "Hi"}, (THINKING, "stop")),
    "responses-stream": (
        "POST",
        "/v1/responses",
        {"input": HI, "stream": True, "reasoning": {"effort": "low", "summary": "auto"}},
        (THINKING, "stop"),
    ),
    "responses-tool-stream": (
        "POST",
        "/v1/responses",
        {"input": "Hi", "tools": RESPONSES_TOOLS, "stream": True},
        (TOOL_CALL, "stop"),
    ),
    "responses-get": ("GET", "/v1/responses/{responses}", None, None),  # the id of "responses"
    "responses-missing": ("GET", "/v1/responses/resp_nope", None, None),
    "responses-bad": ("POST", "/v1/responses", {"input": 3}, None),
    "models": ("GET", "/v1/models", None, None),
    "ollama-chat-stream": (
        "POST",
        "/api/chat",
        {"model": "fake", "messages": HI},
        (THINKING, "stop"),
    ),
    "ollama-generate": (
        "POST",
        "/api/generate",
        {"model": "fake", "prompt": "Hi", "stream": False},
        (THINKING, "stop"),
    ),
    "not-found": ("GET", "/v2/nothing", None, None),
}

_CLOCKS = re.compile(rb'"(created|created_at|completed_at)":\s?[0-9]+')
_TIMINGS = re.compile(rb'"timings":\s?\{[^}]*\}')
_NUMBER = re.compile(rb"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?")
_STAMPS = re.compile(rb'"(created_at|modified_at)":"[0-9T:.-]+Z"')  # Ollama's RFC 3339 times
_NANOS = re.compile(rb'"((total|prompt_eval|eval)_duration)":[0-9]+')  # Ollama's durations


def stable(body: bytes) -> bytes:
    """The body with clock readings and timings replaced by 0."""
    body = _CLOCKS.sub(lambda m: b'"' + m.group(1) + b'": 0', body)
    body = _STAMPS.sub(lambda m: b'"' + m.group(1) + b'":"0"', body)
    body = _NANOS.sub(lambda m: b'"' + m.group(1) + b'":0', body)
    return _TIMINGS.sub(lambda m: _NUMBER.sub(b"0", m.group(0)), body)


def got_json(out: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The cases so far that answered one JSON object."""
    return [(k, v) for k, v in out.items() if b" application/json\n{" in v[:40]]


def exchange() -> dict[str, bytes]:
    """Every case's status, content type and body, in order on one app."""
    engine = FakeEngine()
    out: dict[str, bytes] = {}

    async def go() -> None:
        async with client_of(engine) as (client, app):
            out["openapi.json"] = json.dumps(app.openapi(), indent=1, sort_keys=True).encode()
            for name, (method, path, body, answer) in CASES.items():
                if answer is not None:
                    engine.enqueue(*answer)
                ids = {k: json.loads(v.split(b"\n", 1)[1]).get("id") for k, v in got_json(out)}
                r = await client.request(method, path.format(**ids), json=body)
                head = f"{r.status_code} {r.headers.get('content-type')}\n".encode()
                out[name] = head + stable(r.content)

    run(go)
    return out


@pytest.fixture
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """secrets.token_hex from a counter: ids count up from 1 in the order they are made."""
    counter = itertools.count(1)
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: str(next(counter)))


def test_the_wire_is_what_the_goldens_say(counted_ids: None) -> None:
    got = exchange()
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name, body in got.items():
            (GOLDEN / f"{name}.txt").write_bytes(body)
    want = {p.stem: p.read_bytes() for p in GOLDEN.glob("*.txt")}
    assert sorted(want) == sorted(got)
    for name in got:
        assert got[name] == want[name], name


def test_the_goldens_hold_every_kind_of_answer() -> None:
    # The comparison above would pass on empty goldens: show they hold what they claim.
    files = {p.stem: p.read_text(encoding="utf-8") for p in GOLDEN.glob("*.txt")}
    assert "reasoning_content" in files["chat-stream"] and "[DONE]" in files["chat-stream"]
    assert '"tool_calls"' in files["chat-tool"]
    assert "event: content_block_delta" in files["messages-stream"]
    assert "thinking_delta" in files["messages-stream"]
    assert '"tool_use"' in files["messages-tool-stream"]
    assert "response.function_call_arguments.done" in files["responses-tool-stream"]
    assert files["responses-get"].startswith("200 ")
    assert files["chat-bad"].startswith(("400 ", "422 "))
    assert '"/v1/messages"' in files["openapi.json"]
    assert '"done_reason":"stop"' in files["ollama-chat-stream"]
    assert '"thinking":"Let me see"' in files["ollama-generate"]
