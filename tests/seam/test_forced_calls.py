"""Forced tool calls at the engine seam, on every API: the job carries the tool-call grammar
(and no thinking), the answer comes back as each API's tool calls with its "tool use" finish,
and what cannot be forced is refused by name before the engine sees it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from edge.server.grammar import ForcedCall, json_grammar, tool_call_grammar
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, run, sse

CALL = ["<tool_call>", '\n{"name": "get_time", ', '"arguments": {"tz": "UTC"}}', "\n</tool_call>"]
PARAMS = {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "get_time", "parameters": PARAMS}},
    {"type": "function", "function": {"name": "get_date", "parameters": {"type": "object"}}},
]
RESPONSES_TOOLS = [{"type": "function", **t["function"]} for t in CHAT_TOOLS]
ANTHROPIC_TOOLS = [
    {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in CHAT_TOOLS
]
NO_THINK = "<think>\n\n</think>\n\n"
WEB = {"type": "web_search"}  # a hosted tool: left out, so it cannot be forced
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"


def calls(engine: FakeEngine, *requests: tuple[str, dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with client_of(engine) as (client, _):
            return [await client.post(path, json=body) for path, body in requests]

    return list(run(go))


def chat(**extra: Any) -> tuple[str, dict[str, Any]]:
    return CHAT, {"model": "q", "messages": HI, "tools": CHAT_TOOLS, **extra}


def anthropic(**extra: Any) -> tuple[str, dict[str, Any]]:
    body = {"model": "q", "max_tokens": 64, "messages": HI, "tools": ANTHROPIC_TOOLS, **extra}
    return MESSAGES, body


def responses(**extra: Any) -> tuple[str, dict[str, Any]]:
    return RESPONSES, {"model": "q", "input": "Hi", "tools": RESPONSES_TOOLS, **extra}


def forced(name: str | None, parallel: bool = True) -> str:
    return tool_call_grammar(CHAT_TOOLS, ForcedCall(name, parallel))


@pytest.mark.parametrize(
    ("request_", "grammar"),
    [
        (chat(tool_choice="required"), forced(None)),
        (
            chat(tool_choice={"type": "function", "function": {"name": "get_time"}}),
            forced("get_time"),
        ),
        (chat(tool_choice="required", parallel_tool_calls=False), forced(None, False)),
        (anthropic(tool_choice={"type": "any"}), forced(None)),
        (
            anthropic(
                tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}
            ),
            forced("get_time", False),
        ),
        (responses(tool_choice="required", parallel_tool_calls=False), forced(None, False)),
        (responses(tool_choice={"type": "function", "name": "get_time"}), forced("get_time")),
        (chat(tool_choice="required", enable_thinking=True), forced(None)),
    ],
)
def test_a_forced_call_samples_under_the_tool_call_grammar_without_thinking(
    request_: tuple[str, dict[str, Any]], grammar: str
) -> None:
    engine = FakeEngine()
    engine.enqueue(CALL)
    (r,) = calls(engine, request_)
    assert r.status_code == 200, r.text
    job = engine.jobs[-1]
    assert bytes(job.prompt).decode().endswith(NO_THINK)  # thinking off, whatever was asked
    assert job.params.grammar == grammar


def test_the_grammar_names_only_the_forced_tool_and_one_call_unless_parallel() -> None:
    one = forced("get_time", False)
    assert '"\\"get_time\\""' in one and "get_date" not in one
    assert "edge-forced-block)*" not in one and "edge-forced-block)*" in forced(None)


def test_each_api_answers_the_forced_call_as_its_tool_calls() -> None:
    engine = FakeEngine()
    for _ in range(3):
        engine.enqueue(CALL)
    chat_r, anthropic_r, responses_r = calls(
        engine,
        chat(tool_choice="required"),
        anthropic(tool_choice={"type": "tool", "name": "get_time"}),
        responses(tool_choice="required"),
    )
    choice = chat_r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_time",
        "arguments": '{"tz": "UTC"}',
    }
    message = anthropic_r.json()
    assert message["stop_reason"] == "tool_use"
    assert message["content"][-1]["input"] == {"tz": "UTC"}
    item = responses_r.json()["output"][-1]
    assert item["type"] == "function_call" and item["name"] == "get_time"


def test_a_streamed_forced_call_arrives_as_tool_call_deltas() -> None:
    engine = FakeEngine()
    engine.enqueue(CALL)
    (r,) = calls(engine, chat(tool_choice="required", stream=True))
    chunks = [c for c in sse(r.text) if c != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls_ = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [c["function"]["name"] for c in calls_] == ["get_time"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("request_", "param", "words"),
    [
        (
            chat(tool_choice={"type": "function", "function": {"name": "nope"}}),
            "tool_choice",
            "nope",
        ),
        (chat(tool_choice="sometimes"), "tool_choice", "required"),
        (chat(tools=None, tool_choice="required"), "tool_choice", "no tools"),
        (
            chat(
                tool_choice="required",
                response_format={"type": "json_schema", "json_schema": {"schema": PARAMS}},
            ),
            "tool_choice",
            "both",
        ),
        (responses(tool_choice={"type": "function", "name": "nope"}), "tool_choice", "nope"),
        (
            responses(tool_choice={"type": "file_search"}),
            "tool_choice",
            "'file_search' is a built-in",
        ),
        (
            (
                RESPONSES,
                {"input": "Hi", "tools": [{"type": "web_search"}], "tool_choice": "required"},
            ),
            "tool_choice",
            "needs a function tool",
        ),
    ],
)
def test_what_cannot_be_forced_is_refused_by_name(
    request_: tuple[str, dict[str, Any]], param: str, words: str
) -> None:
    engine = FakeEngine()
    (r,) = calls(engine, request_)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert not engine.jobs


def test_anthropic_refuses_a_forced_tool_it_does_not_have() -> None:
    engine = FakeEngine()
    unknown, unnamed = calls(
        engine,
        anthropic(tool_choice={"type": "tool", "name": "nope"}),
        anthropic(tool_choice={"type": "tool"}),
    )
    for r in (unknown, unnamed):
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "nope" in unknown.json()["error"]["message"] and not engine.jobs


HOSTILE = [
    ({"type": "string", "minLength": 10**9}, "minLength"),
    ({"type": "string", "pattern": "a{99999999}"}, "pattern"),
    ({"enum": []}, "no value"),
    ({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}, "$ref"),
    ({"type": "object", "properties": {"x": {"$ref": "#/properties/y"}}}, "$ref"),
    ({"type": "no-such-type"}, "grammar"),
]


@pytest.mark.parametrize(("schema", "words"), HOSTILE)
def test_a_schema_the_grammar_cannot_take_is_refused_naming_the_tool(
    schema: dict[str, Any], words: str
) -> None:
    tools = [{"type": "function", "function": {"name": "evil", "parameters": schema}}]
    engine = FakeEngine()
    (r,) = calls(engine, chat(tools=tools, tool_choice="required"))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "tools" and "Tool 'evil'" in error["message"], error
    assert words in error["message"], error
    assert not engine.jobs


def test_json_answers_and_forced_calls_share_the_checks() -> None:
    from edge.errors import ParamError

    with pytest.raises(ParamError, match="minLength"):
        json_grammar({"type": "string", "minLength": 10**9}, "response_format")
    # $defs travel with each tool, renamed so two tools' definitions cannot collide.
    item = {
        "$defs": {"X": {"enum": ["a"]}},
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/X"}},
    }
    other = {
        "$defs": {"X": {"enum": ["b"]}},
        "type": "object",
        "properties": {"y": {"$ref": "#/$defs/X"}},
    }
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": item}},
        {"type": "function", "function": {"name": "g", "parameters": other}},
    ]
    grammar = tool_call_grammar(tools, ForcedCall(None, False))
    assert 't0-X ::= "\\"a\\""' in grammar and 't1-X ::= "\\"b\\""' in grammar


CUT = CALL[:2]  # max_tokens ended the answer inside the call's JSON


@pytest.mark.parametrize("stream", [False, True], ids=["folded", "streamed"])
def test_a_call_cut_short_never_comes_back_as_markup(stream: bool) -> None:
    # A forced call that max_tokens cuts mid-JSON is dropped, with each API's length
    # reason: no `<tool_call>` text for a client to show (or to fail its tool choice on).
    engine = FakeEngine()
    for _ in range(3):
        engine.enqueue(CUT, "length")
    chat_r, messages_r, responses_r = calls(
        engine,
        chat(tool_choice="required", stream=stream),
        anthropic(tool_choice={"type": "any"}, stream=stream),
        responses(tool_choice="required", stream=stream),
    )
    for r in (chat_r, messages_r, responses_r):
        assert r.status_code == 200 and "tool_call>" not in r.text, r.text
    for r in (chat_r, messages_r):  # (Responses echoes the tools offered)
        assert '"get_time"' not in r.text  # no call was made, whole or partial
    if stream:
        chunks = sse(chat_r.text)[:-1]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        ends = [e for e in sse(messages_r.text) if e["type"] == "message_delta"]
        assert [e["delta"]["stop_reason"] for e in ends] == ["max_tokens"]
        events = sse(responses_r.text)
        assert events[-1]["type"] == "response.incomplete"
        assert events[-1]["response"]["output"] == []
    else:
        choice = chat_r.json()["choices"][0]
        assert choice["finish_reason"] == "length" and not choice["message"].get("tool_calls")
        assert messages_r.json()["stop_reason"] == "max_tokens"
        assert messages_r.json()["content"] == []
        body = responses_r.json()
        assert body["status"] == "incomplete" and body["output"] == []


def test_a_second_call_cut_short_makes_the_answer_length_not_tool_calls() -> None:
    engine = FakeEngine()
    engine.enqueue([*CALL, "\n", *CUT], "length")
    (r,) = calls(engine, chat())
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_time"]
    assert "tool_call>" not in r.text
