"""Forced tool calls through real clients (the openai SDK on chat completions and Responses,
LangChain's ChatOpenAI), against the scripted "tooling" model, which calls get_time with no
arguments: the grammar must let that call through and turn thinking off whatever the
request's default. Anthropic's SDK: tests/live/test_anthropic_client.py. Schema validity over
random weights: tests/live/test_forced_calls.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.support.live_server import WAIT, serving
from tests.support.prompts import HI, TOOLS
from tests.support.slow import slow_fixture

NAMED: Any = {"type": "function", "function": {"name": "get_time"}}


@slow_fixture(scope="module")
def url(gguf_of: Callable[[str, str], Path]) -> Iterator[str]:
    with serving(gguf_of("tooling", "Q8_0")) as (base, _):
        yield f"{base}/v1"


def test_openai_sdk_required_and_named(url: str) -> None:
    c = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=WAIT)
    # Thinking is on by default here; forcing a call turns it off.
    r = c.chat.completions.create(
        model="x",
        messages=HI,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=32,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    [call] = choice.message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_time", "{}")  # type: ignore[union-attr]
    chunks = list(
        c.chat.completions.create(
            model="x",
            messages=HI,
            tools=TOOLS,
            tool_choice=NAMED,
            parallel_tool_calls=False,
            stream=True,
            max_tokens=32,
        )
    )
    deltas = [d for ch in chunks if ch.choices for d in ch.choices[0].delta.tool_calls or []]
    assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == [  # type: ignore[union-attr]
        (0, "get_time", "{}")
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_sdk_responses_required(url: str) -> None:
    c = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=WAIT)
    tools: Any = [{"type": "function", **TOOLS[0]["function"]}]
    r = c.responses.create(
        model="x", input="Hi", tools=tools, tool_choice="required", max_output_tokens=32
    )
    [item] = [o for o in r.output if o.type == "function_call"]
    assert (item.name, item.arguments) == ("get_time", "{}")  # type: ignore[union-attr]
    with c.responses.stream(
        model="x",
        input="Hi",
        tools=tools,
        tool_choice={"type": "function", "name": "get_time"},
        max_output_tokens=32,
    ) as s:
        final = s.get_final_response()
    assert [o.type for o in final.output][-1] == "function_call"


@tool
def get_time() -> str:
    """The time now."""
    return "12:00"


def test_langchain_bind_tools_any_and_structured_output(url: str) -> None:
    llm = ChatOpenAI(model="x", base_url=url, api_key="x", max_retries=0, timeout=WAIT)  # type: ignore[arg-type]
    message = llm.bind_tools([get_time], tool_choice="any").invoke("What time is it?")
    assert [c["name"] for c in message.tool_calls] == ["get_time"]  # type: ignore[attr-defined]
    schema = {
        "name": "get_time",
        "description": "The time now.",
        "parameters": TOOLS[0]["function"]["parameters"],
    }
    structured = llm.with_structured_output(schema, method="function_calling")
    assert structured.invoke("What time is it?") == {}
    streamed = [json.dumps(part) for part in structured.stream("What time is it?")]
    assert streamed and streamed[-1] == "{}"
