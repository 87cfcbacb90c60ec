"""The OpenAI-compatible server: a real uvicorn on 127.0.0.1, the real `openai` SDK, raw SSE bytes.

The scripted model makes every answer exact: thinking "Let me think", answer "Hello world".
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import uvicorn

from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import Engine
from edge.engine.plan import make_plan, read_model_info
from edge.server import create_app
from tests.support.live_server import WAIT, error_of, free_port, serving
from tests.support.prompts import HI, TOOLS
from tests.support.slow import slow_fixture


@slow_fixture(scope="module")
def scripted_server(gguf_of: Callable[[str, str], Path]) -> Iterator[str]:
    with serving(gguf_of("scripted", "Q8_0")) as (url, _):
        yield url


@pytest.fixture
def client(scripted_server: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{scripted_server}/v1", api_key="unused", max_retries=0, timeout=WAIT
    )


def test_openai_sdk_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="anything", messages=HI)  # type: ignore[arg-type]
    msg = r.choices[0].message
    assert (msg.content, r.choices[0].finish_reason) == ("Hello world", "stop")
    assert msg.model_extra is not None and msg.model_extra["reasoning_content"] == "Let me think"
    assert r.model == "qwen3-test"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (9, 8)
    assert r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == 5


def test_openai_sdk_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="x",
        messages=HI,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for c in chunks
        if c.choices
    )
    assert (content, reasoning) == ("Hello world", "Let me think")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage is not None
        and chunks[-1].usage.total_tokens == 17
    )


def test_async_client(scripted_server: str) -> None:
    async def run() -> tuple[str, str]:
        aclient = openai.AsyncOpenAI(base_url=f"{scripted_server}/v1", api_key="x", max_retries=0)
        whole = await aclient.chat.completions.create(model="x", messages=HI)  # type: ignore[arg-type]
        stream = await aclient.chat.completions.create(model="x", messages=HI, stream=True)  # type: ignore[arg-type]
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await aclient.close()
        return whole.choices[0].message.content or "", "".join(parts)

    assert asyncio.run(run()) == ("Hello world", "Hello world")


@pytest.mark.parametrize(
    "extra",
    [
        {"enable_thinking": False},
        {"chat_template_kwargs": {"enable_thinking": False}},
        {"reasoning_effort": "none"},
        {"think": False},
    ],
)
def test_every_thinking_off_dialect(client: openai.OpenAI, extra: dict[str, Any]) -> None:
    r = client.chat.completions.create(model="x", messages=HI, extra_body=extra)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Hello world"
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    assert r.usage is not None and r.usage.completion_tokens_details.reasoning_tokens == 0  # type: ignore[union-attr]


def test_soft_switch_and_reasoning_formats(client: openai.OpenAI) -> None:
    off = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Hi /no_think"}]
    )
    assert "reasoning_content" not in (off.choices[0].message.model_extra or {})
    inline = client.chat.completions.create(
        model="x", messages=HI, extra_body={"reasoning_format": "inline"}
    )  # type: ignore[arg-type]
    assert inline.choices[0].message.content == "<think>\nLet me think\n</think>\n\nHello world"
    hidden = client.chat.completions.create(
        model="x", messages=HI, extra_body={"return_reasoning": False}
    )  # type: ignore[arg-type]
    assert hidden.choices[0].message.content == "Hello world"
    assert "reasoning_content" not in (hidden.choices[0].message.model_extra or {})
    budget = client.chat.completions.create(
        model="x", messages=HI, extra_body={"thinking_budget": 1}
    )  # type: ignore[arg-type]
    assert "reasoning_content" not in (
        budget.choices[0].message.model_extra or {}
    )  # closed at once
    assert budget.choices[0].message.content == "Hello world"


def test_raw_sse_wire_format(scripted_server: str) -> None:
    body = {"model": "x", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST", f"{scripted_server}/v1/chat/completions", json=body, timeout=WAIT
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    payloads = [json.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert all(e.startswith(b"data: {") for e in events[:-2])
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finals = [p for p in payloads if p["choices"] and p["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["delta"] == {}
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 8
    assert "timings" in finals[0]


def test_errors_have_openai_shape(scripted_server: str) -> None:
    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{scripted_server}/v1/chat/completions", json=body, timeout=WAIT)

    r = post({"messages": HI, "n": 2})
    assert r.status_code == 400 and error_of(r)["param"] == "n"
    r = post({"messages": HI, "temperature": -1})
    assert r.status_code == 400 and error_of(r)["param"] == "temperature"
    r = post({"messages": []})
    assert r.status_code == 400 and error_of(r)["param"] == "messages"
    r = post({"messages": [{"role": "wizard", "content": "x"}]})
    assert r.status_code == 400 and error_of(r)["param"] == "messages.0.role"
    r = post({"messages": [{"role": "user", "content": "word " * 3000}]})
    assert r.status_code == 400 and error_of(r)["code"] == "context_length_exceeded"
    # 9 prompt tokens + 2040 > 2048: the budget is cut to the room, not refused (issue 27).
    r = post({"messages": HI, "max_tokens": 2040})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello world"
    r = httpx.post(
        f"{scripted_server}/v1/completions",
        timeout=WAIT,
        json={"prompt": "word " * 3000, "stream": True},
    )
    assert r.status_code == 400 and error_of(r)["code"] == "context_length_exceeded"  # not in-band
    r = httpx.post(
        f"{scripted_server}/v1/chat/completions",
        content=b"{not json",
        timeout=WAIT,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and error_of(r)["type"] == "invalid_request_error"
    r = httpx.get(f"{scripted_server}/v1/nope", timeout=WAIT)
    assert r.status_code == 404 and error_of(r)["type"] == "not_found_error"
    r = post(
        {"messages": HI, "unknown_field": {"x": 1}, "user": "me"}
    )  # unknown fields are ignored
    assert r.status_code == 200


def test_models_and_health(scripted_server: str, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["qwen3-test"]
    health = httpx.get(f"{scripted_server}/health", timeout=WAIT).json()
    assert health["status"] == "ok" and health["load_ms"] > 0


def test_text_completion(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model="x",
        prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        max_tokens=20,
        temperature=0,
    )
    assert r.choices[0].text == "<think>Let me think</think>\n\nHello world"
    assert r.choices[0].finish_reason == "stop"
    stream = client.completions.create(
        model="x",
        prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].text for c in chunks if c.choices)
        == "<think>Let me think</think>\n\nHello world"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_json_response_format(gguf_of: Callable[[str, str], Path]) -> None:
    with serving(gguf_of("tiny", "Q8_0")) as (url, _):
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=WAIT)
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        r = c.chat.completions.create(
            model="x",
            messages=HI,
            max_tokens=60,
            seed=3,  # type: ignore[arg-type]
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        )
        assert isinstance(json.loads(r.choices[0].message.content or "")["ok"], bool)


LONG = {"model": "x", "messages": HI, "stream": True, "max_tokens": 4000, "loop_guard": False}


def test_disconnect_stops_generation(gguf_of: Callable[[str, str], Path]) -> None:
    with serving(gguf_of("looping", "Q8_0"), n_ctx=8192) as (url, app):
        worker = app.state.runtime.worker
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=LONG, timeout=WAIT) as r:
            lines = r.iter_lines()
            for _ in range(20):  # a runaway answer is streaming
                next(lines)
        at_close = worker.generated_tokens
        deadline = time.monotonic() + WAIT
        while worker.in_flight:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert worker.generated_tokens - at_close <= 3  # stopped within a token or so of the close
        # and the engine is free for the next request at once
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={**LONG, "stream": False, "max_tokens": 5},
            timeout=WAIT,
        )
        assert r.status_code == 200


def test_full_queue_gets_429(gguf_of: Callable[[str, str], Path]) -> None:
    with serving(gguf_of("looping", "Q8_0"), Settings(max_queue=1), n_ctx=8192) as (url, app):
        worker = app.state.runtime.worker
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=LONG, timeout=WAIT) as running:
            lines = running.iter_lines()  # kept: dropping the iterator closes the connection
            next(lines)
            waiting = threading.Thread(
                target=lambda: httpx.post(
                    f"{url}/v1/chat/completions",
                    json={**LONG, "stream": False, "max_tokens": 3},
                    timeout=WAIT,
                )
            )
            waiting.start()
            deadline = time.monotonic() + WAIT
            while worker.waiting < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            r = httpx.post(
                f"{url}/v1/chat/completions", json={**LONG, "stream": False}, timeout=WAIT
            )
            assert (
                r.status_code == 429
                and r.headers["retry-after"]
                and error_of(r)["type"] == "rate_limit_error"
            )
        waiting.join(timeout=WAIT)  # the queued request ran once the first one went away
        assert not waiting.is_alive()


def test_api_key_and_body_limit(gguf_of: Callable[[str, str], Path]) -> None:
    with serving(gguf_of("scripted", "Q8_0"), Settings(api_key="s3cret", max_body_bytes=4096)) as (
        url,
        _,
    ):
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="x", messages=HI)  # type: ignore[arg-type]
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert (
            good.chat.completions.create(model="x", messages=HI).choices[0].message.content
            == "Hello world"
        )  # type: ignore[arg-type]
        assert httpx.get(f"{url}/health", timeout=WAIT).status_code == 200  # health needs no key
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x" * 5000}]},
            headers={"authorization": "Bearer s3cret"},
            timeout=WAIT,
        )
        assert r.status_code == 413 and error_of(r)["type"] == "invalid_request_error"


def test_prometheus_metrics(scripted_server: str, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="x", messages=HI)  # type: ignore[arg-type]
    text = httpx.get(f"{scripted_server}/metrics", timeout=WAIT).text
    series = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert int(series['edge_requests_total{api="chat_completions",status="200"}']) >= 1
    assert int(series["edge_generated_tokens_total"]) >= 8
    assert int(series["edge_time_to_first_token_seconds_count"]) >= 1
    assert int(series['edge_inter_token_seconds_bucket{le="+Inf"}']) >= 7
    assert series["edge_queue_depth"] == "0" and series["edge_in_flight"] == "0"
    # The shelf (finished conversations' KV in RAM) reports its cap and what it holds.
    assert int(series["edge_shelf_cap_bytes"]) > 0
    assert 0 <= int(series["edge_shelf_bytes"]) <= int(series["edge_shelf_peak_bytes"])


def test_tool_calls(gguf_of: Callable[[str, str], Path]) -> None:
    with serving(gguf_of("tooling", "Q8_0")) as (url, _):
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=WAIT)
        off = {"enable_thinking": False}
        r = c.chat.completions.create(model="x", messages=HI, tools=TOOLS, extra_body=off)  # type: ignore[arg-type]
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        [call] = choice.message.tool_calls or []
        assert (call.function.name, call.function.arguments) == ("get_time", "{}")  # type: ignore[union-attr]
        assert call.id.startswith("call_") and call.type == "function"
        chunks = list(
            c.chat.completions.create(
                model="x", messages=HI, tools=TOOLS, stream=True, extra_body=off
            )
        )  # type: ignore[arg-type]
        deltas = [d for ch in chunks if ch.choices for d in ch.choices[0].delta.tool_calls or []]
        assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == [
            (0, "get_time", "{}")
        ]  # type: ignore[union-attr]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        # The call and its result go back into the conversation, rendered by the template.
        follow = [
            *HI,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "12:00"},
        ]
        again = c.chat.completions.create(model="x", messages=follow, tools=TOOLS, extra_body=off)  # type: ignore[arg-type]
        assert again.choices[0].finish_reason in ("tool_calls", "stop", "length")
        none = c.chat.completions.create(
            model="x",
            messages=HI,
            tools=TOOLS,
            tool_choice="none",  # type: ignore[arg-type]
            extra_body=off,
            max_tokens=20,
        )
        assert none.choices[0].message.tool_calls is None  # not parsed when tools are off


def test_503_while_loading_then_ready(gguf_of: Callable[[str, str], Path]) -> None:
    gguf = gguf_of("scripted", "Q8_0")
    info = read_model_info(gguf)
    go = threading.Event()

    def slow_load() -> tuple[Engine, ChatTemplate]:
        assert go.wait(WAIT)
        return Engine(gguf, make_plan(info, Settings(ctx=512)), info), ChatTemplate.from_gguf(gguf)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app("m", slow_load), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "loading"
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": HI}, timeout=WAIT)
        assert r.status_code == 503 and error_of(r)["type"] == "server_error"
        go.set()
        while httpx.get(f"{url}/health", timeout=2).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (
            httpx.post(
                f"{url}/v1/chat/completions", json={"messages": HI}, timeout=WAIT
            ).status_code
            == 200
        )
    finally:
        go.set()
        server.should_exit = True
        thread.join(timeout=WAIT)


def test_disconnect_while_the_prompt_is_read(gguf_of: Callable[[str, str], Path]) -> None:
    # ~20k prompt tokens take the tiny model several seconds to read on this machine.
    body = {**LONG, "messages": [{"role": "user", "content": "word " * 20000}], "max_tokens": 100}
    with serving(gguf_of("looping", "Q8_0"), n_ctx=32768) as (url, app):
        worker = app.state.runtime.worker
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=WAIT) as r:
            # The status line comes at once; the first chunk waits for the first token, so a
            # router in front could still send the request elsewhere.
            assert r.status_code == 200
            time.sleep(0.5)
            assert (
                worker.in_flight == 1 and worker.generated_tokens == 0
            )  # still reading the prompt
            closed = time.monotonic()
        deadline = closed + WAIT
        while worker.in_flight:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert (
            time.monotonic() - closed < 2.0
        )  # stopped at the next prompt batch, not after all of it
        assert worker.generated_tokens == 0


def test_cors_is_closed_unless_origins_are_named(
    scripted_server: str, gguf_of: Callable[[str, str], Path]
) -> None:
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(f"{scripted_server}/v1/chat/completions", headers=preflight, timeout=WAIT)
    assert "access-control-allow-origin" not in r.headers
    with serving(gguf_of("scripted", "Q8_0"), Settings(cors_origins=("http://home.lan",))) as (
        url,
        _,
    ):
        ok = httpx.options(
            f"{url}/v1/chat/completions",
            timeout=WAIT,
            headers={**preflight, "Origin": "http://home.lan"},
        )
        assert ok.headers.get("access-control-allow-origin") == "http://home.lan"
        assert "access-control-allow-credentials" not in ok.headers
        evil = httpx.options(f"{url}/v1/chat/completions", headers=preflight, timeout=WAIT)
        assert evil.headers.get("access-control-allow-origin") != "http://evil.example"
