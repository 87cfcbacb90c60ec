"""Anthropic's Messages API over a fake engine (fast, in process): the raw SSE wire event by
event, the folded message against the stream, stop reasons, the request's translation
into the chat pipeline's prompt and sampling, count_tokens, and errors in Anthropic's
shape (also from the guard, and in-band once a stream has begun)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import Settings
from edge.engine.text import cut_stop
from edge.errors import ContextFullError, QueueFullError
from edge.server import sse
from edge.server.anthropic.route import event_bytes
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, events_of, run, stream_while_silent

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
BASE: dict[str, Any] = {"model": "qwen3", "max_tokens": 64, "messages": HI}
THINK = {"thinking": {"type": "enabled", "budget_tokens": 32}}
THOUGHT = ["<think>", "Let me", " think", "</think>", "\n\n", "Hello", " world"]
TOOLS = [
    {
        "name": "get_time",
        "description": "The time now.",
        "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
    }
]
CALL = ["<tool_call>", '{"name": "get_time", ', '"arguments": {"tz": "UTC"}}', "</tool_call>"]
KEY = "sk-anthropic-K3y"


def calls(
    engine: FakeEngine, *requests: tuple[str, dict[str, Any]], options: Settings | None = None
) -> list[httpx.Response]:
    """POST each (path, body) in order to one app around `engine`."""

    async def go() -> list[httpx.Response]:
        async with client_of(engine, options) as (client, _):
            return [await client.post(path, json=body) for path, body in requests]

    return list(run(go))


def wire(body: str) -> list[dict[str, Any]]:
    """The events of an Anthropic stream, checking each is `event: <type>` then its data."""
    out = []
    for raw in events_of(body):
        name, data = raw.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}", raw
        out.append(payload)
    return out


def accumulate(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The message a client builds from the stream events (as the SDKs do)."""
    message = dict(events[0]["message"])
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for e in events[1:]:
        if e["type"] == "content_block_start":
            assert e["index"] == len(blocks)
            blocks.append(dict(e["content_block"]))
        elif e["type"] == "content_block_delta":
            d = e["delta"]
            key = {"text_delta": "text", "thinking_delta": "thinking"}.get(d["type"])
            if key:
                blocks[e["index"]][key] += d[key]
            else:
                partial[e["index"]] = partial.get(e["index"], "") + d["partial_json"]
        elif e["type"] == "content_block_stop" and e["index"] in partial:
            blocks[e["index"]]["input"] = json.loads(partial[e["index"]])
        elif e["type"] == "message_delta":
            message.update(e["delta"], usage=e["usage"])
    return {**message, "content": blocks}


def test_a_streamed_answer_with_thinking_is_anthropic_events_in_order() -> None:
    engine = FakeEngine()
    engine.enqueue(THOUGHT)
    [r] = calls(engine, (MESSAGES, {**BASE, **THINK, "stream": True}))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = wire(r.text)
    start = events[0]["message"]
    assert start["id"].startswith("msg_") and len(start["id"]) > 10
    prompt = len(engine.jobs[-1].prompt)
    usage = {
        "input_tokens": prompt,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert events == [
        {
            "type": "message_start",
            "message": {
                "id": start["id"],
                "type": "message",
                "role": "assistant",
                "model": "fake",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": " think"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Hello"},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": " world"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {**usage, "output_tokens": 7},
        },
        {"type": "message_stop"},
    ]


def test_a_tool_call_streams_as_one_tool_use_block() -> None:
    engine = FakeEngine()
    engine.enqueue(["Checking.", *CALL])
    [r] = calls(engine, (MESSAGES, {**BASE, "tools": TOOLS, "stream": True}))
    events = wire(r.text)
    kinds = [(e["type"], e.get("index")) for e in events]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    block = events[4]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "get_time" and block["input"] == {}
    assert block["id"].startswith("toolu_")
    assert events[5]["delta"]["type"] == "input_json_delta"
    assert json.loads(events[5]["delta"]["partial_json"]) == {"tz": "UTC"}
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


SCRIPTS = [
    pytest.param(THOUGHT, "stop", THINK, id="thinking-and-text"),
    pytest.param(["Checking.", *CALL], "stop", {"tools": TOOLS}, id="text-and-tool"),
    pytest.param(["Hello", " wor"], "length", {}, id="cut-short"),
    pytest.param([], "stop", {}, id="empty"),
]


@pytest.mark.parametrize(("pieces", "reason", "extra"), SCRIPTS)
def test_the_folded_message_is_what_the_stream_builds(
    pieces: list[str], reason: str, extra: dict[str, Any]
) -> None:
    engine = FakeEngine()
    engine.enqueue(pieces, reason)
    engine.enqueue(pieces, reason)
    body = {**BASE, **extra}
    streamed, folded = calls(engine, (MESSAGES, {**body, "stream": True}), (MESSAGES, body))
    built, whole = accumulate(wire(streamed.text)), folded.json()
    for message in (built, whole):
        for block in message["content"]:
            if block["type"] == "tool_use":
                block["id"] = "toolu_x"  # fresh per answer
    assert {**built, "id": "x"} == {**whole, "id": "x"}
    assert whole["type"] == "message" and whole["role"] == "assistant"
    assert whole["usage"]["output_tokens"] == len(pieces)


@pytest.mark.parametrize(
    ("pieces", "reason", "stop", "expected"),
    [
        (["Hello"], "stop", None, ("end_turn", None)),
        (["Hello"], "length", None, ("max_tokens", None)),
        (["Hello"], "cancelled", None, ("max_tokens", None)),  # cut by a shutdown
        (["Hello"], "stop", "END", ("stop_sequence", "END")),
        (CALL, "stop", None, ("tool_use", None)),
    ],
)
def test_stop_reasons(
    pieces: list[str], reason: str, stop: str | None, expected: tuple[str, str | None]
) -> None:
    engine = FakeEngine()
    engine.enqueue(pieces, reason, stop)
    [r] = calls(engine, (MESSAGES, {**BASE, "tools": TOOLS, "stop_sequences": ["END"]}))
    assert (r.json()["stop_reason"], r.json()["stop_sequence"]) == expected
    assert engine.jobs[-1].params.stop == ["END"]


def test_max_tokens_reaches_the_engine_and_a_cut_answer_says_max_tokens() -> None:
    engine = FakeEngine()
    engine.enqueue(["a", "b", "c", "d"])
    [r] = calls(engine, (MESSAGES, {**BASE, "max_tokens": 2}))
    assert engine.jobs[-1].params.max_tokens == 2
    assert r.json()["content"] == [{"type": "text", "text": "ab"}]
    assert r.json()["stop_reason"] == "max_tokens"


def test_max_tokens_over_the_context_gets_the_room_left_and_says_so() -> None:
    engine = FakeEngine(n_ctx=4096)
    engine.enqueue(["a", "b"], "length")  # as the engine ends an answer that fills the context
    engine.enqueue(["a", "b"], "length")
    big, small = calls(
        engine, (MESSAGES, {**BASE, "max_tokens": 32000}), (MESSAGES, {**BASE, "max_tokens": 2})
    )
    fitted, asked = engine.jobs
    assert fitted.params.max_tokens == 4096 - len(fitted.prompt)
    assert big.json()["stop_reason"] == "model_context_window_exceeded"
    assert asked.params.max_tokens == 2 and small.json()["stop_reason"] == "max_tokens"
    # A prompt that leaves no room at all is still refused.
    [full] = calls(FakeEngine(n_ctx=40), (MESSAGES, BASE))
    anthropic_error(full, 400, "invalid_request_error")


def test_the_earliest_stop_string_is_the_one_reported() -> None:
    assert cut_stop("say STOP now END", ["END", "STOP"]) == ("say ", "", "STOP")
    assert cut_stop("say ST", ["STOP"]) == ("say ", "ST", None)
    assert cut_stop("plain", []) == ("plain", "", None)


def test_thinking_is_off_unless_asked_and_a_budget_reaches_the_engine() -> None:
    engine = FakeEngine()
    off, disabled, budget, adaptive = calls(
        engine,
        (MESSAGES, BASE),
        (MESSAGES, {**BASE, "thinking": {"type": "disabled"}}),
        (MESSAGES, {**BASE, "thinking": {"type": "enabled", "budget_tokens": 7}}),
        (MESSAGES, {**BASE, "thinking": {"type": "adaptive"}}),
    )
    assert {r.status_code for r in (off, disabled, budget, adaptive)} == {200}
    prompts = [bytes(job.prompt).decode() for job in engine.jobs]  # the fake: a token a byte
    no_think = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert prompts[0].endswith(no_think) and prompts[1].endswith(no_think)
    assert prompts[2].endswith("<|im_start|>assistant\n") and not prompts[2].endswith(no_think)
    assert prompts[3] == prompts[2]
    budgets = [job.thinking.budget for job in engine.jobs]
    assert budgets == [None, None, 7, None]
    # Qwen's recommended sampling for each mode, unless the request says otherwise.
    temperatures = [job.params.temperature for job in engine.jobs]
    assert temperatures == [0.7, 0.7, 0.6, 0.6]


def test_sampling_fields_reach_the_engine() -> None:
    engine = FakeEngine()
    body = {**BASE, "temperature": 0.2, "top_p": 0.5, "top_k": 5, "metadata": {"user_id": "u"}}
    [r] = calls(engine, (MESSAGES, body))
    assert r.status_code == 200
    p = engine.jobs[-1].params
    assert (p.temperature, p.top_p, p.top_k, p.min_p) == (0.2, 0.5, 5, 0.0)


# A conversation with a system prompt in blocks, a tool round trip and earlier thinking, in
# Anthropic's shape and in OpenAI's: both must render to the very same prompt.
ANTHROPIC_TURNS: dict[str, Any] = {
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What time is it?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Call the tool.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {"tz": "UTC"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no such zone"}],
                    "is_error": True,
                },
                {"type": "text", "text": "And in words?"},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "Reply in English."}]},
    ],
    "tools": TOOLS,
}
OPENAI_TURNS: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What time is it?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "reasoning_content": "Call the tool.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": {"tz": "UTC"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12:00"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no such zone"},
        {"role": "user", "content": "And in words?"},
        {"role": "system", "content": "Reply in English."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "parameters": t["input_schema"],
                "description": t["description"],
            },
        }
        for t in TOOLS
    ],
    "enable_thinking": False,
}


def test_a_conversation_renders_the_prompt_chat_completions_renders() -> None:
    engine = FakeEngine()
    anthropic, openai = calls(
        engine,
        (MESSAGES, {**ANTHROPIC_TURNS, "max_tokens": 8}),
        ("/v1/chat/completions", {**OPENAI_TURNS, "max_tokens": 8}),
    )
    assert anthropic.status_code == openai.status_code == 200, (anthropic.text, openai.text)
    mine, theirs = (bytes(job.prompt).decode() for job in engine.jobs)
    assert mine == theirs
    assert "<tool_response>\nError: no such zone\n</tool_response>" in mine
    assert '"name": "get_time"' in mine  # the tool is offered


def test_tool_choice_none_offers_no_tools() -> None:
    engine = FakeEngine()
    (none,) = calls(engine, (MESSAGES, {**BASE, "tools": TOOLS, "tool_choice": {"type": "none"}}))
    assert none.status_code == 200
    assert "get_time" not in bytes(engine.jobs[-1].prompt).decode()
    assert engine.jobs[-1].params.grammar is None  # forcing is test_forced_seam's


def test_count_tokens_counts_the_prompt_a_message_request_sends() -> None:
    engine = FakeEngine()
    body = {**ANTHROPIC_TURNS}
    counted, counted_thinking, sent = calls(
        engine,
        (COUNT, body),
        (COUNT, {**body, **THINK}),
        (MESSAGES, {**body, "max_tokens": 8}),
    )
    assert counted.status_code == 200 and counted.json() == {
        "input_tokens": len(engine.jobs[-1].prompt)
    }
    assert sent.json()["usage"]["input_tokens"] == counted.json()["input_tokens"]
    # Thinking on renders no empty think block: the count follows the prompt exactly.
    no_think = len("<think>\n\n</think>\n\n")
    assert counted_thinking.json()["input_tokens"] == counted.json()["input_tokens"] - no_think


def anthropic_error(r: httpx.Response, status: int, error_type: str) -> str:
    """The message of an Anthropic error answer, checking its status and exact shape."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == error_type
    message: str = body["error"]["message"]
    assert message
    return message


def test_invalid_bodies_get_anthropic_errors_naming_the_field() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
    answers = calls(
        FakeEngine(),
        (MESSAGES, {"messages": HI}),  # no max_tokens: Anthropic requires it
        (MESSAGES, {**BASE, "temperature": "hot"}),
        (MESSAGES, {**BASE, "messages": [{"role": "tool", "content": "x"}]}),
        (MESSAGES, {**BASE, "messages": [{"role": "user", "content": [image]}]}),
        (MESSAGES, {**BASE, "thinking": {"type": "enabled", "budget_tokens": -1}}),
        (COUNT, {"messages": []}),
    )
    messages = [anthropic_error(r, 400, "invalid_request_error") for r in answers]
    assert messages[0] == "Invalid value for 'max_tokens': Field required."
    assert "'temperature'" in messages[1]
    assert "'messages.0.role'" in messages[2]
    assert "'image' blocks are not supported" in messages[3]
    assert "'messages'" in messages[5]


def test_the_guard_and_http_errors_answer_in_anthropic_shape_on_its_paths() -> None:
    async def go() -> list[httpx.Response]:
        options = Settings(api_key=KEY, max_body_bytes=2000)
        async with client_of(FakeEngine(), options) as (client, _):
            right = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
            return [
                await client.post(MESSAGES, json=BASE),
                await client.post(MESSAGES, json=BASE, headers={"x-api-key": "wrong"}),
                await client.post(COUNT, json={"messages": HI}),
                await client.post(MESSAGES, content=b" " * 2001, headers=right),
                await client.get("/v1/messages/nope", headers=right),
                await client.post("/v1/chat/completions", json={"messages": HI}),
                await client.post(MESSAGES, json=BASE, headers={**right, "anthropic-beta": "x"}),
            ]

    missing, wrong, count, too_big, unknown, chat, ok = run(go)
    for r in (missing, wrong, count):
        assert "x-api-key" in anthropic_error(r, 401, "authentication_error")
    anthropic_error(too_big, 413, "request_too_large")
    anthropic_error(unknown, 404, "not_found_error")
    assert chat.status_code == 401 and set(chat.json()["error"]) >= {"param", "code"}  # OpenAI's
    assert ok.status_code == 200 and ok.json()["content"] == [{"type": "text", "text": "ok"}]


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (QueueFullError("Busy."), 429, "rate_limit_error"),
        (ContextFullError("Full."), 503, "overloaded_error"),
    ],
)
def test_engine_errors_are_a_status_or_an_error_event_once_streaming(
    error: Exception, status: int, error_type: str
) -> None:
    engine = FakeEngine()
    engine.enqueue_error(error)  # type: ignore[arg-type]
    engine.enqueue_error(error)  # type: ignore[arg-type]
    whole, streamed = calls(engine, (MESSAGES, BASE), (MESSAGES, {**BASE, "stream": True}))
    anthropic_error(whole, status, error_type)
    assert whole.headers["retry-after"] == "2"
    assert streamed.status_code == 200  # the status line went out with message_start
    events = wire(streamed.text)
    assert [e["type"] for e in events] == ["message_start", "error"]
    assert events[1] == {"type": "error", "error": {"type": error_type, "message": str(error)}}


def test_pings_flow_while_the_prompt_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.server.worker.KEEPALIVE_AFTER", 0.05)
    types = [e["type"] for e in wire(stream_while_silent(MESSAGES, BASE).text)]
    first_block = types.index("content_block_start")
    pings = [i for i, t in enumerate(types) if t == "ping"]
    assert len(pings) >= 2, types
    # Only pings until the answer starts, message_start included: a router in front can
    # still send a request that has no answer yet to another server.
    assert pings == list(range(len(pings))) and types[len(pings)] == "message_start"
    assert max(pings) < first_block
    assert types[-1] == "message_stop"


def test_the_routes_are_in_the_openapi_schema_with_anthropic_errors() -> None:
    async def go() -> dict[str, Any]:
        async with client_of(FakeEngine()) as (client, _):
            return dict((await client.get("/openapi.json")).json())

    schema = run(go)
    for path in (MESSAGES, COUNT):
        responses = schema["paths"][path]["post"]["responses"]
        assert responses["4XX"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/AnthropicErrorResponse"
        }
    body = schema["components"]["schemas"]["MessagesRequest"]
    assert {"max_tokens", "messages"} <= set(body["required"])


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=["Cs"])),  # no lone surrogates: refused
    index=st.integers(0, 10**6),
    kind=st.sampled_from(["text", "thinking"]),
)
def test_the_delta_template_writes_exactly_what_json_would(
    text: str, index: int, kind: str
) -> None:
    delta = {"type": f"{kind}_delta", kind: text}
    payload = {"type": "content_block_delta", "index": index, "delta": delta}
    assert event_bytes(payload) == sse.event("content_block_delta", payload)
    json_delta = {"type": "input_json_delta", "partial_json": text}
    other = {"type": "content_block_delta", "index": index, "delta": json_delta}
    assert event_bytes(other) == sse.event("content_block_delta", other)
