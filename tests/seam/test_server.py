"""The server over a fake engine at the seam, in process (no model, no uvicorn): SSE
framing of chat and text completions, keep-alives, folded answers, the queue's 429, drain.
Fast; the same behaviours run against the real engine and a real uvicorn in
tests/live/test_server.py. The error table is tested in test_server_errors.py, the Guard
and CORS in test_server_guard.py, on the same helpers (tests/support/seam.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from edge.config import Settings
from edge.engine import SamplingParams, ThinkingControl
from edge.errors import ContextFullError, EdgeError
from edge.server.chat_completions.answer import ChunkBytes, chunk
from edge.server.chat_completions.request import ChatSpec
from edge.server.sse import dumps
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, events_of, qwen_template, run, sse, stream_while_silent


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


FUNCTION = {"name": "f", "arguments": "{}"}


@pytest.mark.parametrize(
    "delta",
    [
        {"content": 'a "quoted"\n\\ line ✓ \u2028 \x01'},
        {"reasoning_content": "x\ty", "reasoning": "x\ty"},
        {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": FUNCTION}]},
        {"role": "assistant", "content": ""},
    ],
)
def test_chunk_bytes_equal_the_json_of_the_chunk(delta: dict[str, Any]) -> None:
    job = ChatSpec("p", SamplingParams(), ThinkingControl(), True, "separate", True, False, False)
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
        async with client_of(engine, Settings(max_queue=1)) as (client, app):
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
            streamed = {"messages": HI, "stream": True}
            running = asyncio.create_task(client.post("/v1/chat/completions", json=streamed))
            for _ in range(500):  # the stream holds the one slot before the second comes
                if worker.generated_tokens > 3:
                    break
                await asyncio.sleep(0.01)
            folded = {"messages": HI}
            waiting = asyncio.create_task(client.post("/v1/chat/completions", json=folded))
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
        stream = worker.start(job)
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


# --- SSE framing, chat and text completions ----------------------------------------------

CHAT = ("/v1/chat/completions", {"messages": HI})
TEXT = ("/v1/completions", {"prompt": "Once"})


@pytest.mark.parametrize("api", [CHAT, TEXT], ids=["chat", "text"])
def test_a_stream_is_whole_data_events_then_done(api: tuple[str, dict[str, Any]]) -> None:
    path, body = api
    engine = FakeEngine()
    engine.enqueue(["a\nb", "\n\n", "c"], "stop")  # newlines in text must stay inside JSON

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post(path, json={**body, "stream": True})

    r = run(go)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = events_of(r.text)
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    assert "".join(_text(c) for c in sse(r.text)[:-1]) == "a\nb\n\nc"


def _text(chunk: dict[str, Any]) -> str:
    choice = chunk["choices"][0] if chunk["choices"] else {}
    return choice.get("text") or choice.get("delta", {}).get("content") or ""


def test_a_chat_stream_without_include_usage_ends_with_the_finish_chunk() -> None:
    engine = FakeEngine()
    engine.enqueue(["x", "y", "z"], "stop")

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            body = {"messages": HI, "stream": True, "max_tokens": 2}
            return await client.post("/v1/chat/completions", json=body)

    chunks = sse(run(go).text)
    assert chunks[-1] == "[DONE]"
    final = chunks[-2]
    assert final["object"] == "chat.completion.chunk"
    assert final["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    ]
    assert final["timings"]["predicted_n"] == 2
    assert not any("usage" in c for c in chunks[:-1])
    assert [_text(c) for c in chunks[1:-2]] == ["x", "y"]


def test_a_text_stream_has_text_chunks_a_finish_chunk_and_the_usage_chunk() -> None:
    engine = FakeEngine()
    engine.enqueue(["Hel", "lo ✓"], "stop")

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            body = {"prompt": "Once", "stream": True, "stream_options": {"include_usage": True}}
            return await client.post("/v1/completions", json=body)

    chunks = sse(run(go).text)
    assert chunks[-1] == "[DONE]"
    *texts, final, usage = chunks[:-1]
    assert [c["choices"][0]["text"] for c in texts] == ["Hel", "lo ✓"]
    assert all(c["choices"][0]["finish_reason"] is None for c in texts)
    assert final["choices"] == [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert {c["object"] for c in chunks[:-1]} == {"text_completion"}
    assert len({c["id"] for c in chunks[:-1]}) == 1 and usage["id"].startswith("cmpl-")
    assert engine.jobs[0].prompt == list(b"Once")  # no chat template around the prompt


def test_the_folded_answers_hold_what_the_streams_hold() -> None:
    engine = FakeEngine()
    engine.enqueue(["<think>", "\nhmm", "</think>", "\n\n", "Hi ", "there"], "stop")
    engine.enqueue(["one", " two", " three"], "stop")

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with client_of(engine) as (client, _):
            chat = await client.post("/v1/chat/completions", json={"messages": HI})
            text = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            return chat.json(), text.json()

    chat, text = run(go)
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    message = chat["choices"][0]["message"]
    assert message["content"] == "Hi there" and message["reasoning_content"].strip() == "hmm"
    assert chat["choices"][0]["finish_reason"] == "stop"
    assert chat["usage"]["completion_tokens"] == 6
    assert chat["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert text["object"] == "text_completion"
    assert text["choices"] == [
        {"index": 0, "text": "one two", "logprobs": None, "finish_reason": "length"}
    ]
    assert text["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@pytest.mark.parametrize("api", [CHAT, TEXT], ids=["chat", "text"])
def test_keepalive_comments_flow_while_the_prompt_is_read(
    api: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge.server.worker.KEEPALIVE_AFTER", 0.05)
    path, body = api
    events = events_of(stream_while_silent(path, body).text)
    first_text = next(i for i, e in enumerate(events) if "late" in e)
    keepalives = [i for i, e in enumerate(events) if e == ": keep-alive"]
    assert len(keepalives) >= 2, events
    assert max(keepalives) < first_text  # only while nothing else came
    # and nothing else before them: the role chunk waits for the first token, so a router
    # in front of several servers can still send the request elsewhere
    assert keepalives == list(range(len(keepalives)))
    assert events[-1] == "data: [DONE]"


def test_admission_holds_a_place_until_the_stream_starts_or_is_dropped() -> None:
    import gc

    from edge.engine import Job
    from edge.errors import QueueFullError
    from edge.server.worker import EngineWorker

    engine = FakeEngine(slots=1)
    job = Job([1, 2, 3], SamplingParams(max_tokens=4))

    async def go() -> None:
        worker = EngineWorker(engine, max_queue=1)
        # Admitted together, before any stream starts: the slot and the one queue place
        # are taken at admission, so a third request is refused at once.
        held = [worker.start(job), worker.start(job)]
        assert worker.in_flight == 2
        with pytest.raises(QueueFullError):
            worker.start(job)
        assert worker.in_flight == 2
        del held  # dropped before they started: their places are given back
        gc.collect()
        assert worker.in_flight == 0
        # A started stream's place is the engine's to give back, when the job ends.
        stream = worker.start(job)
        assert [type(e).__name__ async for e in stream][-1] == "Finish"
        for _ in range(100):
            if worker.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert worker.in_flight == 0 and len(engine.jobs) == 1

    run(go)
    engine.close()


def test_keepalive_while_the_engine_is_silent() -> None:
    """A long prompt: nothing for a while, then the end. One ticker wakes the silent
    stream with keep-alives; the engine's items, posted from its own thread, end it."""
    from edge.engine import Finish, Job, SamplingParams, Ticket, Usage
    from edge.server.worker import AsyncInbox, Keepalive

    async def run() -> list[object]:
        ended: list[Ticket] = []
        inbox = AsyncInbox(asyncio.get_running_loop(), 0.1, lambda t, _: ended.append(t))
        ticket = Ticket(Job([1], SamplingParams()), inbox)
        finish = Finish("stop", Usage(1, 0, 0, 0), 0.1, 0.1)
        timer = threading.Timer(0.35, inbox.post, [[(ticket, finish)]])
        timer.start()
        items = [item async for item in inbox.items(ticket)]
        timer.join()
        assert ended == [ticket]
        return items

    items = asyncio.run(run())
    assert 2 <= sum(isinstance(i, Keepalive) for i in items) <= 4 and isinstance(items[-1], Finish)
