"""The Responses API against real llama.cpp on a real uvicorn (127.0.0.1), through real
clients: the `openai` SDK's `client.responses` and the OpenAI Agents SDK, once over
Responses and once over chat completions.

The scripted model thinks "Let me think" and answers "Hello world"; the tooling model,
with thinking off, always calls get_time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.live_server import WAIT, serving
from tests.support.slow import slow_fixture

TOOLS: Any = [
    {
        "type": "function",
        "name": "get_time",
        "description": "The time now.",
        "parameters": {"type": "object", "properties": {}},
    }
]
OFF: Any = {"effort": "none"}  # thinking off: the tooling model then calls its tool


@slow_fixture(scope="module")
def scripted(gguf_of: Callable[[str, str], Path]) -> Iterator[openai.OpenAI]:
    with serving(gguf_of("scripted", "Q8_0")) as (url, _):
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=WAIT)


@slow_fixture(scope="module")
def tooling(gguf_of: Callable[[str, str], Path]) -> Iterator[str]:
    with serving(gguf_of("tooling", "Q8_0"), n_ctx=4096) as (url, _):
        yield url


def test_create_with_reasoning(scripted: openai.OpenAI) -> None:
    r = scripted.responses.create(model="x", input="Hi", max_output_tokens=50)
    assert r.status == "completed" and r.output_text == "Hello world"
    reasoning, message = r.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert [c.text for c in reasoning.content or []] == ["Let me think"]
    assert [c.text for c in reasoning.summary] == ["Let me think"]  # where OpenAI's clients look
    assert r.usage is not None and r.usage.output_tokens_details.reasoning_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert scripted.responses.retrieve(r.id).output_text == "Hello world"


def test_create_without_thinking(scripted: openai.OpenAI) -> None:
    r = scripted.responses.create(model="x", input="Hi", reasoning=OFF, max_output_tokens=50)
    assert [item.type for item in r.output] == ["message"] and r.output_text == "Hello world"


def test_stream(scripted: openai.OpenAI) -> None:
    with scripted.responses.stream(model="x", input="Hi", max_output_tokens=50) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert (text, thought) == ("Hello world", "Let me think")
    [reasoning, _] = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Let me think"
    assert final.output_text == "Hello world" and final.status == "completed"


def test_langchain_and_the_agents_sdk_show_the_thinking(scripted: openai.OpenAI) -> None:
    # Both read a reasoning item's summary, as OpenAI's own models give only that: on their
    # default settings, with the base URL alone, they see Qwen3's thinking.
    import agents
    from langchain_openai import ChatOpenAI

    url = str(scripted.base_url)
    llm = ChatOpenAI(base_url=url, api_key="x", model="q", use_responses_api=True, max_retries=0)  # type: ignore[arg-type]
    blocks = llm.invoke("Hi").content_blocks
    assert [(b["type"], b.get("reasoning", b.get("text"))) for b in blocks] == [
        ("reasoning", "Let me think"),
        ("text", "Hello world"),
    ]
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=WAIT)
    model = agents.OpenAIResponsesModel("q", client)
    agents.set_tracing_disabled(True)

    async def run() -> tuple[list[str], str]:
        result = await agents.Runner.run(agents.Agent(name="a", model=model), "Hi")
        thoughts = [
            part.text
            for item in result.new_items
            if isinstance(item, agents.ReasoningItem)
            for part in item.raw_item.summary
        ]
        return thoughts, str(result.final_output)

    assert asyncio.run(run()) == (["Let me think"], "Hello world")


def test_max_output_tokens_is_incomplete(scripted: openai.OpenAI) -> None:
    r = scripted.responses.create(model="x", input="Hi", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"


def test_previous_response_id_reuses_the_prompt_prefix(scripted: openai.OpenAI) -> None:
    first = scripted.responses.create(model="x", input="Hi", max_output_tokens=50)
    second = scripted.responses.create(
        model="x", input="Again", previous_response_id=first.id, max_output_tokens=50
    )
    assert second.output_text == "Hello world" and second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    # The second prompt starts with the first: llama.cpp's KV prefix cache skips it.
    assert second.usage.input_tokens > first.usage.input_tokens
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    with pytest.raises(openai.NotFoundError):
        scripted.responses.create(model="x", input="Hi", previous_response_id="resp_nope")


def test_json_schema_format(gguf_of: Callable[[str, str], Path]) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    fmt: Any = {"type": "json_schema", "name": "r", "schema": schema, "strict": True}
    with serving(gguf_of("tiny", "Q8_0")) as (url, _):
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=WAIT)
        r = c.responses.create(model="x", input="Hi", text={"format": fmt}, max_output_tokens=60)
    assert r.status == "completed" and isinstance(json.loads(r.output_text)["ok"], bool)
    assert [item.type for item in r.output] == ["message"]  # a grammar cannot think


def test_built_in_tools_are_left_out_and_said_so(scripted: openai.OpenAI) -> None:
    # Codex CLI sends its hosted web_search tool by default: the answer comes, without it.
    tools: Any = [{"type": "web_search"}, {"type": "image_generation"}]
    raw = scripted.responses.with_raw_response.create(model="x", input="Hi", tools=tools)
    assert raw.headers["edge-qwen-tools-left-out"] == "web_search, image_generation"
    assert raw.parse().output_text == "Hello world"
    with pytest.raises(openai.BadRequestError) as caught:
        scripted.responses.create(model="x", input="Hi", tools=[{"type": "telepathy"}])
    assert caught.value.param == "tools[0].type"  # type: ignore[attr-defined]


def test_function_tool_round_trip(tooling: str) -> None:
    c = openai.OpenAI(base_url=f"{tooling}/v1", api_key="x", max_retries=0, timeout=WAIT)
    r = c.responses.create(model="x", input="What time is it?", tools=TOOLS, reasoning=OFF)
    [call] = r.output
    assert call.type == "function_call" and call.name == "get_time"
    assert json.loads(call.arguments) == {} and call.status == "completed"
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "12:00"}
    # By reference to the stored response, and with the whole conversation sent back.
    follow = c.responses.create(
        model="x", input=[result], previous_response_id=r.id, tools=TOOLS, reasoning=OFF
    )
    whole: Any = [{"role": "user", "content": "What time is it?"}, call.model_dump(), result]
    again = c.responses.create(model="x", input=whole, tools=TOOLS, reasoning=OFF)
    for answer in (follow, again):
        assert answer.status == "completed" and answer.output[0].type == "function_call"
    assert follow.usage is not None and again.usage is not None
    assert follow.usage.input_tokens == again.usage.input_tokens  # the same prompt
    with c.responses.stream(model="x", input="Time?", tools=TOOLS, reasoning=OFF) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds
    assert [item.type for item in final.output] == ["function_call"]


# --- the OpenAI Agents SDK -----------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_agents_sdk_runs_a_function_tool(tooling: str, api: str) -> None:
    import agents
    from openai.types.shared import Reasoning

    agents.set_tracing_disabled(True)  # never phone home
    calls: list[str] = []

    @agents.function_tool
    def get_time() -> str:
        """The time now."""
        calls.append("get_time")
        return "12:00"

    client = openai.AsyncOpenAI(base_url=f"{tooling}/v1", api_key="x", max_retries=0)
    model: Any = (
        agents.OpenAIResponsesModel("qwen3", client)
        if api == "responses"
        else agents.OpenAIChatCompletionsModel("qwen3", client)
    )
    settings = agents.ModelSettings(reasoning=Reasoning(effort="none"), max_tokens=64)

    def agent(**extra: Any) -> agents.Agent[Any]:
        return agents.Agent(
            name="clock",
            instructions="Tell the time.",
            tools=[get_time],
            model=model,
            model_settings=settings,
            **extra,
        )

    async def go() -> None:
        # Stop at the tool's result: one model call, one tool run, a final output.
        result = await agents.Runner.run(agent(tool_use_behavior="stop_on_first_tool"), "Time?")
        assert result.final_output == "12:00" and calls == ["get_time"]
        # The tool's result goes back to the model, which (scripted) calls it again: the
        # second turn's request carries the call and its output; the run ends at max_turns.
        with pytest.raises(agents.MaxTurnsExceeded):
            await agents.Runner.run(agent(), "Time?", max_turns=2)
        assert calls == ["get_time"] * 3
        await client.close()

    asyncio.run(asyncio.wait_for(go(), 120))
