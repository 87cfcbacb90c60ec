"""Anthropic's Messages API with the real `anthropic` SDK against a real uvicorn on 127.0.0.1
and the real engine: scripted models make every answer exact. The "scripted" model thinks
"Let me think" (when thinking is on) and answers "Hello world"; the "tooling" one calls
get_time when thinking is off, which is the Messages API's default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from edge.config import Settings
from tests.support.live_server import WAIT, serving
from tests.support.slow import slow_fixture

KEY = "sk-ant-local-K3y"
HI: list[Any] = [{"role": "user", "content": "Hi"}]
TOOLS: list[Any] = [
    {
        "name": "get_time",
        "description": "The current time.",
        "input_schema": {"type": "object", "properties": {}},
    }
]


def client_of(url: str, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=WAIT)


@slow_fixture(scope="module")
def scripted(gguf_of: Callable[[str, str], Path]) -> Iterator[anthropic.Anthropic]:
    # With a key, so every call here also goes through the guard's x-api-key check.
    with serving(gguf_of("scripted", "Q8_0"), Settings(api_key=KEY)) as (url, _):
        yield client_of(url)


@slow_fixture(scope="module")
def tooling(gguf_of: Callable[[str, str], Path]) -> Iterator[anthropic.Anthropic]:
    with serving(gguf_of("tooling", "Q8_0"), Settings(api_key=KEY)) as (url, _):
        yield client_of(url)


def blocks(message: Any) -> list[tuple[str, Any]]:
    """(type, the block's text, thinking or (name, input)) of each content block."""
    out = []
    for b in message.content:
        value = {"text": "text", "thinking": "thinking"}.get(b.type)
        out.append((b.type, getattr(b, value) if value else (b.name, b.input)))
    return out


def test_create_without_thinking_is_the_answer_alone(scripted: anthropic.Anthropic) -> None:
    m = scripted.messages.create(model="qwen3", max_tokens=32, messages=HI)
    assert blocks(m) == [("text", "Hello world")]
    assert (m.stop_reason, m.stop_sequence, m.role, m.type) == (
        "end_turn",
        None,
        "assistant",
        "message",
    )
    assert m.model == "qwen3-test" and m.id.startswith("msg_")
    assert m.usage.output_tokens > 0 and m.usage.input_tokens > 0


def test_create_with_thinking_and_a_budget(scripted: anthropic.Anthropic) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 64}
    m = scripted.messages.create(model="q", max_tokens=64, messages=HI, thinking=thinking)
    assert blocks(m) == [("thinking", "Let me think"), ("text", "Hello world")]
    assert m.content[0].signature == ""  # type: ignore[union-attr]
    # A budget of one token: the engine closes the think block at once.
    one: Any = {"type": "enabled", "budget_tokens": 1}
    cut = scripted.messages.create(model="q", max_tokens=64, messages=HI, thinking=one)
    assert blocks(cut) == [("text", "Hello world")]


def test_stream_builds_the_message_create_answers(scripted: anthropic.Anthropic) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 64}
    whole = scripted.messages.create(model="q", max_tokens=64, messages=HI, thinking=thinking)
    with scripted.messages.stream(
        model="q", max_tokens=64, messages=HI, thinking=thinking
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert blocks(final) == blocks(whole)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "thinking" in kinds and "text" in kinds  # the SDK's own thinking and text events
    with scripted.messages.stream(model="q", max_tokens=32, messages=HI) as plain:
        assert "".join(plain.text_stream) == "Hello world"


def test_a_stop_sequence_ends_the_answer_and_is_named(scripted: anthropic.Anthropic) -> None:
    m = scripted.messages.create(model="q", max_tokens=32, messages=HI, stop_sequences=["world"])
    assert blocks(m) == [("text", "Hello ")]
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "world")
    short = scripted.messages.create(model="q", max_tokens=1, messages=HI)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 1
    # Far over the 2048-token context, as Claude Code asks (32000): fitted, not refused.
    big = scripted.messages.create(model="q", max_tokens=100_000, messages=HI)
    assert blocks(big) == [("text", "Hello world")] and big.stop_reason == "end_turn"


def test_count_tokens_is_the_prompt_create_sends(scripted: anthropic.Anthropic) -> None:
    system = "Be brief."
    counted = scripted.messages.count_tokens(model="q", messages=HI, system=system)
    m = scripted.messages.create(model="q", max_tokens=8, messages=HI, system=system)
    assert counted.input_tokens > 0
    assert counted.input_tokens == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)


def test_errors_are_the_sdks_exceptions(scripted: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client_of(str(scripted.base_url), "wrong").messages.create(
            model="q", max_tokens=8, messages=HI
        )
    assert auth.value.status_code == 401
    assert auth.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Missing or wrong API key. "
            "Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        },
    }
    with pytest.raises(anthropic.BadRequestError) as bad:
        scripted.messages.create(
            model="q",
            max_tokens=8,
            messages=HI,
            tools=TOOLS,
            tool_choice={"type": "tool", "name": "nope"},
        )
    assert "nope" in str(bad.value)


def test_a_forced_tool_use(tooling: anthropic.Anthropic) -> None:
    """tool_choice "tool" (and "any"): the grammar holds the answer to a tool_use block."""
    forced: Any = {"type": "tool", "name": "get_time"}
    first = tooling.messages.create(
        model="q", max_tokens=32, messages=HI, tools=TOOLS, tool_choice=forced
    )
    assert first.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in first.content] == [("tool_use", "get_time", {})]
    with tooling.messages.stream(
        model="q", max_tokens=32, messages=HI, tools=TOOLS, tool_choice={"type": "any"}
    ) as s:
        streamed = s.get_final_message()
    assert blocks(streamed) == blocks(first) and streamed.stop_reason == "tool_use"


def test_a_tool_round_trip(tooling: anthropic.Anthropic) -> None:
    first = tooling.messages.create(model="q", max_tokens=32, messages=HI, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert call.type == "tool_use" and (call.name, call.input) == ("get_time", {})
    assert call.id.startswith("toolu_")
    with tooling.messages.stream(model="q", max_tokens=32, messages=HI, tools=TOOLS) as s:
        streamed = s.get_final_message()
    assert blocks(streamed) == blocks(first) and streamed.stop_reason == "tool_use"
    result: Any = {"type": "tool_result", "tool_use_id": call.id, "content": "12:00"}
    history: Any = [
        *HI,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [result]},
    ]
    again = tooling.messages.create(model="q", max_tokens=16, messages=history, tools=TOOLS)
    assert again.type == "message" and again.stop_reason in ("tool_use", "end_turn", "max_tokens")
    counted = tooling.messages.count_tokens(model="q", messages=history, tools=TOOLS)
    assert counted.input_tokens > tooling.messages.count_tokens(model="q", messages=HI).input_tokens
