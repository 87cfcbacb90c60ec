"""The Responses API over a fake engine at the seam, in process: the named event stream
event by event, folded answers, the effort table, refusals by field, the response store
(LRU by count and bytes, partitions per key), GET/DELETE and previous_response_id.
The same API against real llama.cpp, the openai SDK and the Agents SDK:
tests/live/test_responses_client.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from edge.config import Settings
from edge.server.responses.request import EFFORTS
from edge.server.responses.store import ResponseStore, partition_of
from tests.support.fake_engine import FakeEngine
from tests.support.seam import client_of, qwen_template, run, stream_while_silent

THINK_AND_TEXT = ["<think>", "\nhmm", "</think>", "\n\n", "Hel", "lo ✓"]
TOOL_CALL = ["<tool_call>", '\n{"name": "get_time", "arguments": {}}\n', "</tool_call>"]
TOOLS = [{"type": "function", "name": "get_time", "parameters": {"type": "object"}}]
NO_THINK = "<think>\n\n</think>\n\n"


def named(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event; keep-alive comments skipped."""
    assert body.endswith("\n\n")
    out = []
    for block in body[:-2].split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        out.append((lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])))
    return out


def post(engine: FakeEngine, *bodies: dict[str, Any], options: Settings | None = None) -> Any:
    """POST each body to /v1/responses in turn; the responses."""

    async def go() -> list[httpx.Response]:
        async with client_of(engine, options) as (client, _):
            # As ASCII JSON, so lone surrogates travel as the escapes clients send.
            headers = {"Content-Type": "application/json"}
            return [
                await client.post("/v1/responses", content=json.dumps(body), headers=headers)
                for body in bodies
            ]

    return run(go)


def prompt_of(engine: FakeEngine, index: int = -1) -> str:
    return bytes(engine.jobs[index].prompt).decode()  # the fake's tokens are the bytes


def stream_events(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    pairs = named(r.text)
    assert all(name == data["type"] for name, data in pairs)  # the SSE name is the type
    events = [data for _, data in pairs]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in r.text
    return events


def test_thinking_and_text_stream_event_by_event() -> None:
    engine = FakeEngine()
    engine.enqueue(THINK_AND_TEXT)
    [r] = post(engine, {"input": "Hi", "stream": True})
    events = stream_events(r)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, reasoning, message, done = events[0], events[2:8], events[8:15], events[-1]
    assert created["response"]["status"] == "in_progress" and created["response"]["output"] == []
    rs_id = reasoning[0]["item"]["id"]
    assert rs_id.startswith("rs_") and reasoning[0]["item"]["type"] == "reasoning"
    assert all(e.get("item_id", rs_id) == rs_id and e["output_index"] == 0 for e in reasoning)
    assert reasoning[2]["delta"] == reasoning[3]["text"] == "hmm"
    assert all(e["summary_index"] == 0 for e in reasoning[1:5])
    assert reasoning[4]["part"] == {"type": "summary_text", "text": "hmm"}
    msg_id = message[0]["item"]["id"]
    assert msg_id.startswith("msg_") and message[0]["item"]["status"] == "in_progress"
    assert all(e.get("item_id", msg_id) == msg_id and e["output_index"] == 1 for e in message)
    assert all(e["content_index"] == 0 for e in message[1:6])
    assert [e["delta"] for e in message[2:4]] == ["Hel", "lo ✓"]
    assert message[4]["text"] == "Hello ✓"  # the answer never starts with the "\n\n"
    response = done["response"]
    assert response["status"] == "completed" and response["id"] == created["response"]["id"]
    assert response["output"] == [reasoning[-1]["item"], message[-1]["item"]]
    # The thinking is the summary clients written for OpenAI read, and the content others do.
    assert response["output"][0]["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert response["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert response["output"][1]["content"][0]["text"] == "Hello ✓"
    usage = response["usage"]
    assert usage["output_tokens"] == 6 and usage["input_tokens"] == len(engine.jobs[0].prompt)
    assert usage["total_tokens"] == usage["input_tokens"] + 6
    assert prompt_of(engine) == qwen_template().render(
        [{"role": "user", "content": "Hi"}], enable_thinking=True
    )


def test_a_tool_call_streams_as_a_function_call_item() -> None:
    engine = FakeEngine()
    engine.enqueue(TOOL_CALL)
    body = {"input": "Time?", "tools": TOOLS, "stream": True, "reasoning": {"effort": "none"}}
    [r] = post(engine, body)
    events = stream_events(r)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta, args_done, item_done, completed = events[2:]
    assert added["item"]["arguments"] == "" and added["item"]["status"] == "in_progress"
    item = item_done["item"]
    assert item["type"] == "function_call" and item["id"].startswith("fc_")
    assert item["name"] == "get_time" and item["call_id"].startswith("call_")
    assert json.loads(item["arguments"]) == {} and item["status"] == "completed"
    assert delta["delta"] == args_done["arguments"] == item["arguments"]
    assert {e["item_id"] for e in (delta, args_done)} == {item["id"]}
    assert completed["response"]["output"] == [item]
    assert '"name": "get_time"' in prompt_of(engine)  # the tool reached the template


def test_namespaced_tools_are_offered_flat_and_calls_name_their_namespace() -> None:
    engine = FakeEngine()
    engine.enqueue(TOOL_CALL)
    clock = {"type": "namespace", "name": "clock", "description": "Time.", "tools": TOOLS}
    other = {"type": "function", "name": "other", "parameters": {"type": "object"}}
    body = {"input": "Time?", "tools": [other, clock], "reasoning": {"effort": "none"}}
    [r] = post(engine, body)
    [call] = r.json()["output"]
    assert (call["name"], call["namespace"]) == ("get_time", "clock")
    as_chat = [
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ]
    expected = qwen_template().render(
        [{"role": "user", "content": "Time?"}], enable_thinking=False, tools=as_chat
    )
    assert prompt_of(engine) == expected


def _same(response: dict[str, Any]) -> dict[str, Any]:
    """A response without what differs between two runs (ids, times)."""
    drop = {"id", "created_at", "completed_at"}
    out = {k: v for k, v in response.items() if k not in drop}
    out["output"] = [{k: v for k, v in item.items() if k != "id"} for item in out["output"]]
    for item in out["output"]:
        item.pop("call_id", None)
    return out


@pytest.mark.parametrize("script", [THINK_AND_TEXT, TOOL_CALL])
def test_folded_equals_streamed(script: list[str]) -> None:
    engine = FakeEngine()
    engine.enqueue(script)
    engine.enqueue(script)
    body = {"input": "Hi", "tools": TOOLS}
    streamed, folded = post(engine, {**body, "stream": True}, body)
    assert folded.status_code == 200
    completed = stream_events(streamed)[-1]["response"]
    assert _same(folded.json()) == _same(completed)
    assert folded.json()["output"]  # something to compare


@pytest.mark.parametrize("effort", [None, *EFFORTS])
def test_reasoning_effort_sets_thinking_and_budget(effort: str | None) -> None:
    engine = FakeEngine()
    body: dict[str, Any] = {"input": "Hi"}
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    [r] = post(engine, body)
    assert r.status_code == 200
    thinking, budget = EFFORTS[effort] if effort else (True, None)
    assert prompt_of(engine).endswith(NO_THINK) == (not thinking)
    assert engine.jobs[-1].thinking.budget == budget
    assert r.json()["reasoning"]["effort"] == effort
    assert engine.jobs[-1].params.temperature == (0.6 if thinking else 0.7)  # Qwen's defaults


def test_effort_table_covers_off_bounded_and_unbounded() -> None:
    assert EFFORTS["none"] == EFFORTS["minimal"] == (False, None)
    assert EFFORTS["low"][1] is not None and EFFORTS["medium"][1] is not None
    assert EFFORTS["low"][1] < EFFORTS["medium"][1] and EFFORTS["high"] == (True, None)


def test_thinking_budget_extension_overrides_the_effort() -> None:
    engine = FakeEngine()
    [r] = post(engine, {"input": "Hi", "reasoning": {"effort": "low"}, "thinking_budget": 7})
    assert r.status_code == 200 and engine.jobs[-1].thinking.budget == 7


def test_json_schema_format_reaches_the_grammar_without_thinking() -> None:
    engine = FakeEngine()
    engine.enqueue(['{"a":', " 1}"])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "name": "x", "schema": schema, "strict": True}
    [r] = post(engine, {"input": "Hi", "text": {"format": fmt}, "max_output_tokens": 9})
    assert r.status_code == 200
    job = engine.jobs[-1]
    assert job.params.json_schema == schema and job.params.max_tokens == 9
    assert prompt_of(engine).endswith(NO_THINK)
    assert r.json()["output"][0]["content"][0]["text"] == '{"a": 1}'
    assert r.json()["text"]["format"] == fmt


def test_json_object_format_asks_for_any_object() -> None:
    engine = FakeEngine()
    [r] = post(engine, {"input": "JSON please", "text": {"format": {"type": "json_object"}}})
    assert r.status_code == 200 and engine.jobs[-1].params.json_schema == {"type": "object"}
    assert r.json()["text"] == {"format": {"type": "json_object"}}


def test_max_output_tokens_ends_incomplete() -> None:
    engine = FakeEngine()
    engine.enqueue(["a", " b", " c", " d"])
    engine.enqueue(["a", " b", " c", " d"])
    body = {"input": "Hi", "max_output_tokens": 2, "reasoning": {"effort": "none"}}
    folded, streamed = post(engine, body, {**body, "stream": True})
    response = folded.json()
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"][0]["text"] == "a b"
    last = stream_events(streamed)[-1]
    assert last["type"] == "response.incomplete" and _same(last["response"]) == _same(response)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "telepathy"}]}, "tools[0].type"),
        ({"tools": [*TOOLS, {"name": "f"}]}, "tools[1].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        (
            {"tools": [{"type": "namespace", "name": "n", "tools": [*TOOLS, {"type": "custom"}]}]},
            "tools[0].tools[1].type",
        ),
        ({"tools": [{"type": "namespace", "name": "n", "tools": "x"}]}, "tools[0].tools"),
        ({"background": True}, "background"),
        ({"n": 2}, "n"),
        ({"tool_choice": "required"}, "tool_choice"),  # with no tools to call
        ({"tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"top_logprobs": 21}, "top_logprobs"),  # 0-20, as OpenAI allows
        ({"stream": 1}, "stream"),
        ({"input": [{"type": "computer_call_output"}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                        ],
                    }
                ]
            },
            "input[0].content[1]",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
            "input[0].output",
        ),
        ({"input": []}, "input"),
        ({"input": "lone \ud800 surrogate"}, "input"),
        ({"instructions": "\udfff"}, "input"),
        ({"metadata": {"k": "\ud800"}}, "metadata"),
        ({"user": "\ud800"}, "user"),
        ({"tools": [{**TOOLS[0], "strict": "\ud800"}]}, "tools"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(
    extra: dict[str, Any], param: str
) -> None:
    engine = FakeEngine()
    [r] = post(engine, {"input": "Hi", **extra})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]
    assert engine.jobs == []  # refused before the engine saw it


def test_an_engine_error_is_a_status_or_a_failed_event() -> None:
    from edge.errors import ContextFullError

    engine = FakeEngine()
    engine.enqueue_error(ContextFullError("The server's context is full.", "Retry."))
    engine.enqueue_error(ContextFullError("The server's context is full.", "Retry."))
    folded, streamed = post(engine, {"input": "Hi"}, {"input": "Hi", "stream": True})
    assert folded.status_code == 503 and folded.json()["error"]["type"] == "server_error"
    events = stream_events(streamed)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "context is full" in failed["error"]["message"]


def test_keepalive_comments_flow_before_the_first_event_of_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edge.server.worker.KEEPALIVE_AFTER", 0.05)
    r = stream_while_silent("/v1/responses", {"input": "Hi", "reasoning": {"effort": "none"}})
    blocks = r.text[:-2].split("\n\n")
    keepalives = [i for i, b in enumerate(blocks) if b == ": keep-alive"]
    first_item = next(i for i, b in enumerate(blocks) if "output_item.added" in b)
    # Only keep-alives until the answer starts (response.created included): a router in
    # front can still send a request that has no answer yet to another server.
    assert len(keepalives) >= 2 and keepalives == list(range(len(keepalives)))
    assert "response.created" in blocks[len(keepalives)] and max(keepalives) < first_item
    assert stream_events(r)[-1]["response"]["output"][0]["content"][0]["text"] == "late"


# --- the store ------------------------------------------------------------------------


def _response(rid: str, text: str = "") -> dict[str, Any]:
    return {"id": rid, "object": "response", "output": [], "text": text}


def test_store_evicts_the_least_recently_used_by_count() -> None:
    store = ResponseStore(max_items=2)
    store.put("", _response("a"), [])
    store.put("", _response("b"), [])
    assert store.get("", "a") is not None  # a is now the most recently used
    store.put("", _response("c"), [])
    assert store.get("", "b") is None
    assert store.get("", "a") is not None and store.get("", "c") is not None
    assert len(store) == 2


def test_store_evicts_by_bytes_and_refuses_what_alone_is_too_big() -> None:
    one = len(json.dumps([_response("a", "x" * 1000), []]))
    store = ResponseStore(max_bytes=2 * one + 10)
    for rid in "abc":
        assert store.put("", _response(rid, "x" * 1000), [])
    assert store.get("", "a") is None and len(store) == 2 and store.bytes == 2 * one
    assert not store.put("", _response("huge", "x" * (3 * one)), [])
    assert store.get("", "huge") is None and len(store) == 2
    assert store.delete("", "b") and store.bytes == one and not store.delete("", "b")


def test_store_partitions_are_apart() -> None:
    store = ResponseStore()
    store.put("p1", _response("a"), [{"role": "user", "content": "1"}])
    assert store.get("p2", "a") is None and not store.delete("p2", "a")
    entry = store.get("p1", "a")
    assert entry is not None and entry.items == [{"role": "user", "content": "1"}]


def test_partitions_are_hashes_of_the_key_and_one_without_a_server_key() -> None:
    one, two = partition_of("Bearer k-one", True), partition_of("Bearer k-two", True)
    assert one != two and "k-one" not in one and len(one) == 64
    assert partition_of("Bearer k-one", False) == partition_of("Bearer k-two", False) == ""
    # One key, one partition, however the client spells the scheme.
    assert partition_of("bearer k-one", True) == partition_of("BEARER  k-one", True) == one


def test_get_and_delete_a_stored_response() -> None:
    engine = FakeEngine()
    engine.enqueue(THINK_AND_TEXT)
    engine.enqueue(THINK_AND_TEXT)

    async def go() -> None:
        async with client_of(engine) as (client, _):
            made = (await client.post("/v1/responses", json={"input": "Hi"})).json()
            r = await client.get(f"/v1/responses/{made['id']}")
            assert r.status_code == 200 and r.json() == made
            body = {"input": "Hi", "stream": True}
            streamed = stream_events(await client.post("/v1/responses", json=body))
            completed = streamed[-1]["response"]
            assert (await client.get(f"/v1/responses/{completed['id']}")).json() == completed
            r = await client.delete(f"/v1/responses/{made['id']}")
            assert r.json() == {"id": made["id"], "object": "response", "deleted": True}
            for r in (
                await client.get(f"/v1/responses/{made['id']}"),
                await client.delete(f"/v1/responses/{made['id']}"),
            ):
                assert r.status_code == 404 and made["id"] in r.json()["error"]["message"]
            unstored = await client.post("/v1/responses", json={"input": "Hi", "store": False})
            assert unstored.json()["store"] is False
            r = await client.get(f"/v1/responses/{unstored.json()['id']}")
            assert r.status_code == 404

    run(go)


def test_responses_are_kept_apart_by_api_key() -> None:
    engine = FakeEngine()

    async def go() -> None:
        async with client_of(engine, Settings(api_key="k-one")) as (client, app):
            auth = {"Authorization": "Bearer k-one"}
            r = await client.post("/v1/responses", json={"input": "Hi"}, headers=auth)
            rid = r.json()["id"]
            assert (await client.get(f"/v1/responses/{rid}", headers=auth)).status_code == 200
            r = await client.get(f"/v1/responses/{rid}", headers={"Authorization": "Bearer x"})
            assert r.status_code == 401
            store = app.state.responses
            assert store.get(partition_of("Bearer k-one", True), rid) is not None
            assert store.get("", rid) is None

    run(go)


def test_store_bounds_hold_through_the_api() -> None:
    engine = FakeEngine()

    async def go() -> None:
        async with client_of(engine) as (client, app):
            app.state.responses.max_items = 2
            ids = [
                (await client.post("/v1/responses", json={"input": f"Hi {i}"})).json()["id"]
                for i in range(3)
            ]
            codes = [(await client.get(f"/v1/responses/{rid}")).status_code for rid in ids]
            assert codes == [404, 200, 200]
            r = await client.post(
                "/v1/responses", json={"input": "more", "previous_response_id": ids[0]}
            )
            error = r.json()["error"]  # OpenAI's answer for an unknown or expired id
            assert r.status_code == 404 and error["type"] == "invalid_request_error"
            assert error["param"] == "previous_response_id"
            assert len(engine.jobs) == 3  # the unknown id never reached the engine

    run(go)


# --- conversations ---------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation() -> None:
    engine = FakeEngine()
    engine.enqueue(["<think>", "\nLet me think", "</think>", "\n\n", "Hello"])

    async def go() -> dict[str, Any]:
        async with client_of(engine) as (client, _):
            first = (await client.post("/v1/responses", json={"input": "Hi"})).json()
            follow = {"input": "And you?", "previous_response_id": first["id"]}
            second = await client.post("/v1/responses", json=follow)
            assert second.json()["previous_response_id"] == first["id"]
            replay = {"input": [{"role": "user", "content": "Hi"}, *first["output"]]}
            replay["input"].append({"role": "user", "content": "And you?"})
            await client.post("/v1/responses", json=replay)
            return first

    first = run(go)
    one, two, replayed = prompt_of(engine, 0), prompt_of(engine, 1), prompt_of(engine, 2)
    expected = qwen_template().render(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "reasoning_content": "Let me think"},
            {"role": "user", "content": "And you?"},
        ],
        enable_thinking=True,
    )
    assert two == expected == replayed  # stored or sent back, the same prompt
    assert two.startswith(one)  # the engine's prefix cache reuses the first turn
    assert "Let me think" not in two  # the template drops an earlier turn's thinking
    assert [item["type"] for item in first["output"]] == ["reasoning", "message"]


def test_a_tool_round_trip_through_previous_response_id() -> None:
    engine = FakeEngine()
    engine.enqueue(TOOL_CALL)
    engine.enqueue(["It is noon."])
    off = {"effort": "none"}

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with client_of(engine) as (client, _):
            body = {"input": "Time?", "tools": TOOLS, "reasoning": off, "instructions": "Be brief."}
            first = (await client.post("/v1/responses", json=body)).json()
            [call] = first["output"]
            result = {"type": "function_call_output", "call_id": call["call_id"], "output": "12:00"}
            follow = {"input": [result], "previous_response_id": first["id"], "tools": TOOLS}
            second = await client.post("/v1/responses", json={**follow, "reasoning": off})
            return call, second.json()

    call, second = run(go)
    assert second["output"][0]["content"][0]["text"] == "It is noon."
    expected = qwen_template().render(
        [
            {"role": "user", "content": "Time?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": call["call_id"],
                        "type": "function",
                        "function": {"name": "get_time", "arguments": call["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call["call_id"], "content": "12:00"},
        ],
        enable_thinking=False,
        tools=[
            {
                "type": "function",
                "function": {"name": "get_time", "parameters": TOOLS[0]["parameters"]},
            }
        ],
    )
    assert prompt_of(engine, 1) == expected  # instructions are not carried over
    assert "Be brief." in prompt_of(engine, 0) and "<tool_response>\n12:00" in expected


def test_reasoning_sent_back_stays_with_its_tool_calling_turn() -> None:
    engine = FakeEngine()
    call = {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"}
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "content": []}
    reasoning["content"] = [{"type": "reasoning_text", "text": "I need the clock."}]
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Time?"}]},
        reasoning,
        call,
        {"type": "function_call_output", "call_id": "call_1", "output": "12:00"},
    ]
    [r] = post(engine, {"input": items, "tools": TOOLS})
    assert r.status_code == 200, r.text
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_time", "arguments": "{}"},
    }
    expected = qwen_template().render(
        [
            {"role": "user", "content": "Time?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "I need the clock.",
                "tool_calls": [tool_call],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        ],
        enable_thinking=True,
        tools=[
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
        ],
    )
    assert prompt_of(engine) == expected
    # Qwen3's template keeps the thinking of the turn still in progress, as it was trained.
    assert "<think>\nI need the clock.\n</think>" in expected


def test_the_routes_are_in_the_openapi_schema() -> None:
    async def go() -> dict[str, Any]:
        async with client_of(FakeEngine()) as (client, _):
            return (await client.get("/openapi.json")).json()  # type: ignore[no-any-return]

    paths = run(go)["paths"]
    assert "post" in paths["/v1/responses"]
    assert {"get", "delete"} <= set(paths["/v1/responses/{response_id}"])
    assert "4XX" in paths["/v1/responses"]["post"]["responses"]


@pytest.mark.parametrize("stream", [False, True], ids=["folded", "streamed"])
def test_built_in_tools_are_left_out_of_the_prompt_and_named_in_a_header(stream: bool) -> None:
    # What Codex CLI sends on its default configuration: function tools, a namespace, and
    # the hosted web_search. The model is offered the functions; the header names the rest.
    engine = FakeEngine()
    tools = [
        {"type": "web_search", "external_web_access": False},
        *TOOLS,
        {"type": "web_search_preview"},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
    ]
    body = {"input": "Hi", "tools": tools, "stream": stream}

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post("/v1/responses", json=body)

    r = run(go)
    assert r.status_code == 200, r.text
    assert r.headers["edge-qwen-tools-left-out"] == "web_search, web_search_preview, custom"
    prompt = bytes(engine.jobs[-1].prompt).decode()
    assert TOOLS[0]["name"] in prompt and "web_search" not in prompt and "apply_patch" not in prompt
