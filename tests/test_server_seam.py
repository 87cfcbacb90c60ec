"""The server over a fake engine at the seam, in process (no model, no uvicorn): SSE
framing, errors as HTTP rows and in-band, the queue's 429, drain. Fast; the same
behaviours run against the real engine and a real uvicorn in test_server.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from edge.chat.template import ChatTemplate
from edge.engine import SamplingParams, ThinkingControl
from edge.errors import ContextFullError, EdgeError
from edge.server import ServerOptions, create_app
from edge.server.chat_api import ChatJob, ChunkBytes, chunk
from edge.server.sse import dumps
from tests.fake_engine import FakeEngine

HI = [{"role": "user", "content": "Hi"}]


def qwen_template() -> ChatTemplate:
    from edge.model.synthetic import tokenizer_files_dir

    config = json.loads((tokenizer_files_dir() / "tokenizer_config.json").read_text("utf-8"))
    return ChatTemplate(config["chat_template"])


@asynccontextmanager
async def client_of(
    engine: FakeEngine, options: ServerOptions | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app("fake", lambda: (engine, qwen_template()), options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(500):  # the model "loads" in a background thread
                if (await client.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            yield client, app
    engine.close()


def run(test: Callable[[], Any]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), 30))


def sse(body: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON decoded; [DONE] as the string."""
    out: list[Any] = []
    for line in body.split("\n"):
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_a_stream_is_framed_as_openai_chunks() -> None:
    engine = FakeEngine()
    engine.enqueue(["<think>", "\nhmm", "</think>", "\n\n", "Hel", "lo ✓"], "stop")

    async def go() -> list[Any]:
        async with client_of(engine) as (client, _):
            body = {"messages": HI, "stream": True, "stream_options": {"include_usage": True}}
            r = await client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "text/event-stream"
            )
            return sse(r.text)

    events = run(go)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert "".join(d.get("reasoning_content", "") for d in deltas).strip() == "hmm"
    assert "".join(d.get("content", "") for d in deltas) == "Hello ✓"
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop" and "timings" in final
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    assert len({c["id"] for c in chunks}) == 1
    assert engine.jobs[0].prompt == engine.tokenize(
        qwen_template().render(HI, enable_thinking=True)
    )


@pytest.mark.parametrize(
    "delta",
    [
        {"content": 'a "quoted"\n\\ line ✓ \u2028 \x01'},
        {"reasoning_content": "x\ty", "reasoning": "x\ty"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                }
            ]
        },  # fmt: skip
        {"role": "assistant", "content": ""},
    ],
)
def test_chunk_bytes_equal_the_json_of_the_chunk(delta: dict[str, Any]) -> None:
    job = ChatJob("p", SamplingParams(), ThinkingControl(), True, "separate", True, False, False)
    expected = b"data: " + dumps(chunk(job, "m✓", delta)).encode() + b"\n\n"
    assert ChunkBytes(job, "m✓").delta(delta) == expected


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_error_is_a_status_or_an_in_band_error(stream: bool) -> None:
    engine = FakeEngine()
    engine.enqueue_error(ContextFullError("The server's context is full.", "Retry."))

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post(
                "/v1/chat/completions", json={"messages": HI, "stream": stream}
            )

    r = run(go)
    if not stream:
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["error"]["type"] == "server_error"
        return
    events = sse(r.text)
    assert r.status_code == 200 and events[-1] == "[DONE]"
    assert "context is full" in events[-2]["error"]["message"]


def test_a_full_queue_gets_429_and_the_queued_request_runs_later() -> None:
    engine = FakeEngine(slots=1)
    engine.gate.clear()  # the first request holds the only slot until the gate opens

    async def go() -> tuple[int, int, int]:
        async with client_of(engine, ServerOptions(max_queue=1)) as (client, app):
            worker = app.state.runtime.worker
            body = {"messages": HI, "max_tokens": 5}
            first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            second = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            for _ in range(500):
                if worker.in_flight == 2:
                    break
                await asyncio.sleep(0.01)
            assert worker.waiting == 1 and worker.busy == 1
            third = await client.post("/v1/chat/completions", json=body)
            engine.gate.set()
            done = await asyncio.gather(first, second)
            assert worker.in_flight == 0
            return done[0].status_code, done[1].status_code, third.status_code

    assert run(go) == (200, 200, 429)


def test_drain_cuts_the_running_and_refuses_the_waiting() -> None:
    engine = FakeEngine(slots=1)
    engine.enqueue(["tok"] * 1000)

    async def go() -> tuple[list[Any], httpx.Response, httpx.Response]:
        async with client_of(engine) as (client, app):
            worker = app.state.runtime.worker
            running = asyncio.create_task(client.post("/v1/chat/completions", json={
                "messages": HI, "stream": True}))  # fmt: skip
            for _ in range(500):  # the stream holds the one slot before the second comes
                if worker.generated_tokens > 3:
                    break
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(client.post("/v1/chat/completions", json={
                "messages": HI}))  # fmt: skip
            for _ in range(500):
                if worker.in_flight == 2:
                    break
                await asyncio.sleep(0.01)
            app.state.runtime.drain()
            late = await client.post("/v1/chat/completions", json={"messages": HI})
            return sse((await running).text), await waiting, late

    events, waiting, late = run(go)
    assert events[-2].get("choices", [{}])[0].get("finish_reason") == "length", events[-3:]
    assert events[-1] == "[DONE]"
    assert waiting.status_code == 503 and late.status_code == 503
    assert "shutting down" in waiting.json()["error"]["message"]


def test_every_domain_error_maps_to_one_status() -> None:
    from edge.server.errors import error_response

    assert error_response(ContextFullError("full")).status_code == 503
    assert error_response(EdgeError("other")).status_code == 500


@pytest.mark.parametrize("fails", [False, True])
def test_a_client_leaving_while_its_grammar_compiles_leaves_nothing_behind(fails: bool) -> None:
    from edge.engine import Job
    from edge.server.worker import EngineWorker

    engine = FakeEngine(slots=1)
    engine.grammar_s = 0.3
    if fails:
        engine.grammar_error = EdgeError("The grammar could not be parsed.")
    schema = {"type": "object"}
    job = Job([1, 2, 3], SamplingParams(max_tokens=50, json_schema=schema))

    async def go() -> int:
        worker = EngineWorker(engine)
        stream = worker.stream(job)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)  # inside submit, on its thread
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert worker.in_flight == 1  # the submission has not ended yet
        for _ in range(1000):  # up to 10 s: the submit thread may start late on a busy CI
            await asyncio.sleep(0.01)
            if worker.in_flight == 0:
                break
        return worker.in_flight

    assert run(go) == 0
    if not fails:
        assert engine.tickets[-1].cancelled  # submitted late, and cancelled at once
    engine.close()
