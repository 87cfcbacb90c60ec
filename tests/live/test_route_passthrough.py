"""What LiteLLM's proxy (edge-qwen route's router) passes through, with our real clients.

Two scripted replicas make the "qwen3" group, one tooling replica the "tooling" group,
one router in front (the config `plan_router` writes, LiteLLM started as `route` starts
it). Each answer through the router is compared with the same request sent straight to a
replica. What the router changes is asserted too, so an upgrade that changes it is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from edge.route.litellm import RouterPlan, launch, plan_router
from edge.route.litellm import wait_ready as router_ready
from edge.route.replicas import Replica
from tests.support.live_server import free_port, wait_ready
from tests.support.repo import REPO_ROOT
from tests.support.slow import slow_fixture

HI = [{"role": "user", "content": "Hi"}]
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
KEY = "router-test-key"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_QWEN_", "HF_"))}
    return {**env, "EDGE_QWEN_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def _replica(model: Path, home: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "serve", "-m", str(model), "--port", str(port)],
        env=_env(home),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return proc


ANSWER = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 0,
    "model": "fake",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "from the fake"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class Busy(BaseHTTPRequestHandler):
    """A replica that is full: /busy/v1 always answers 429, /once/v1 answers 429 with
    Retry-After: 1 the first time, then a real answer. Every POST's time is kept."""

    hits: dict[str, list[float]] = {"busy": [], "once": []}

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        which = self.path.split("/")[1]
        self.hits[which].append(time.monotonic())
        ok = which == "once" and len(self.hits[which]) > 1
        body = json.dumps(ANSWER if ok else {"error": {"message": "full"}}).encode()
        self.send_response(200 if ok else 429)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after", "1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _merged(*plans: RouterPlan) -> RouterPlan:
    """One router for several groups; deployment ids made unique."""
    models = [
        dict(d, model_info={**d["model_info"], "id": f"d{i}"})
        for i, d in enumerate(d for p in plans for d in p.config["model_list"])
    ]
    config = {**plans[0].config, "model_list": models}
    return RouterPlan(plans[0].name, config, {k: v for p in plans for k, v in p.secrets.items()})


@slow_fixture(scope="module")
def routed(
    gguf_of: Callable[[str, str], Path], router_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(router URL, a scripted replica's URL)."""
    home = tmp_path_factory.mktemp("route-home")
    scripted, tooling = gguf_of("scripted", "Q8_0"), gguf_of("tooling", "Q8_0")
    procs = [_replica(scripted, home), _replica(scripted, home), _replica(tooling, home)]
    try:
        for p in procs:
            wait_ready(p.url, alive=lambda p=p: p.poll() is None)  # type: ignore[attr-defined]
        reps = [Replica(p.url, "m") for p in procs]  # type: ignore[attr-defined]
        busy = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
        threading.Thread(target=busy.serve_forever, daemon=True).start()
        fake = f"http://127.0.0.1:{busy.server_address[1]}"
        plan = _merged(
            plan_router(reps[:2], name="qwen3", strategy="simple-shuffle", key=KEY),
            plan_router(reps[2:], name="tooling", strategy="simple-shuffle", key=KEY),
            plan_router(
                [Replica(f"{fake}/busy", "m"), reps[0]],
                name="busy",
                strategy="simple-shuffle",
                key=KEY,
            ),
            plan_router(
                [Replica(f"{fake}/once", "m")], name="once", strategy="simple-shuffle", key=KEY
            ),
        )
        port = free_port()
        router = launch(
            router_venv / "bin" / "litellm",
            plan,
            home / "router.yaml",
            host="127.0.0.1",
            port=port,
            environ=_env(home),
        )
        procs.append(router)  # type: ignore[arg-type]
        router_ready(router, f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}", procs[0].url  # type: ignore[attr-defined]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        busy.shutdown()


def _clients(routed: tuple[str, str]) -> tuple[openai.OpenAI, openai.OpenAI]:
    router, replica = routed
    return (
        openai.OpenAI(base_url=f"{router}/v1", api_key=KEY, max_retries=0, timeout=60),
        openai.OpenAI(base_url=f"{replica}/v1", api_key="none", max_retries=0, timeout=60),
    )


def test_the_router_requires_its_key(routed: tuple[str, str]) -> None:
    client = openai.OpenAI(base_url=f"{routed[0]}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.APIStatusError):  # LiteLLM without a database says 400
        client.chat.completions.create(model="qwen3", messages=HI)  # type: ignore[arg-type]


def test_a_whole_answer_passes_unchanged(routed: tuple[str, str]) -> None:
    via, direct = _clients(routed)
    asks: dict[str, Any] = dict(model="qwen3", messages=HI, logprobs=True, top_logprobs=2)
    a, b = via.chat.completions.create(**asks), direct.chat.completions.create(**asks)
    assert a.model == "qwen3"  # the router names its own model group; the rest is equal
    ma, mb = a.choices[0].message.model_dump(), b.choices[0].message.model_dump()
    assert ma["content"] == mb["content"] == "Hello world"
    assert ma["reasoning_content"] == mb["reasoning_content"] == "Let me think"
    # The other spelling, `reasoning`, is moved under provider_specific_fields when not
    # streamed (a stream keeps both side by side, see below).
    assert mb["reasoning"] == ma["provider_specific_fields"]["reasoning"] == "Let me think"
    assert a.usage is not None and b.usage is not None
    assert a.usage.completion_tokens == b.usage.completion_tokens == 8
    assert a.usage.completion_tokens_details.reasoning_tokens == 5  # type: ignore[union-attr]
    assert a.choices[0].logprobs is not None and b.choices[0].logprobs is not None
    assert a.choices[0].logprobs.model_dump() == b.choices[0].logprobs.model_dump()


def _stream(client: openai.OpenAI, **asks: Any) -> tuple[dict[str, str], Any, list[Any]]:
    text: dict[str, str] = {"content": "", "reasoning_content": "", "reasoning": ""}
    usage, chunks = None, []
    for chunk in client.chat.completions.create(stream=True, **asks):
        chunks.append(chunk)
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            for k in text:
                text[k] += delta.get(k) or ""
    return text, usage, chunks


def test_a_stream_keeps_reasoning_apart_and_ends_with_usage(routed: tuple[str, str]) -> None:
    via, direct = _clients(routed)
    asks: dict[str, Any] = dict(model="qwen3", messages=HI, stream_options={"include_usage": True})
    (a, ua, chunks), (b, ub, _) = _stream(via, **asks), _stream(direct, **asks)
    assert (
        a
        == b
        == {
            "content": "Hello world",
            "reasoning_content": "Let me think",
            "reasoning": "Let me think",
        }
    )
    # Equal but for the prompt-cache hits, which depend on the replica the router chose.
    assert ua is not None and ub is not None
    da, db = ua.model_dump(), ub.model_dump()
    assert da["prompt_tokens_details"].pop("cached_tokens") is not None
    db["prompt_tokens_details"].pop("cached_tokens")
    assert da == db
    assert chunks[-1].usage is not None  # the usage chunk comes last, as include_usage asks
    # One difference: LiteLLM's usage chunk carries an empty choice where ours has none.
    assert [c.delta.model_dump(exclude_none=True) for c in chunks[-1].choices] in ([], [{}])


def test_the_thinking_switches_reach_the_replica(routed: tuple[str, str]) -> None:
    via, _ = _clients(routed)
    for extra in (NO_THINK, {"enable_thinking": False}, {"reasoning_effort": "none"}):
        reply = via.chat.completions.create(model="qwen3", messages=HI, extra_body=extra)
        message = reply.choices[0].message
        assert message.content == "Hello world", extra
        assert not getattr(message, "reasoning_content", None), extra


def test_tool_calls_stream_through(routed: tuple[str, str]) -> None:
    via, _ = _clients(routed)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    stream = via.chat.completions.create(
        model="tooling", messages=HI, tools=TOOLS, stream=True, extra_body=NO_THINK
    )
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"name": "", "arguments": ""})
                slot["name"] += (call.function and call.function.name) or ""
                slot["arguments"] += (call.function and call.function.arguments) or ""
    assert calls == {0: {"name": "get_time", "arguments": "{}"}} and finish == "tool_calls"


def test_json_schema_is_enforced_through_the_router(routed: tuple[str, str]) -> None:
    via, _ = _clients(routed)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    reply = via.chat.completions.create(
        model="qwen3",
        messages=HI,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert isinstance(json.loads(reply.choices[0].message.content or "")["a"], int)


def test_responses_pass_through_streamed_and_not(routed: tuple[str, str]) -> None:
    via, _ = _clients(routed)
    reply = via.responses.create(model="qwen3", input="Hi")
    assert reply.output_text == "Hello world"
    assert [item.type for item in reply.output] == ["reasoning", "message"]
    assert reply.usage is not None and reply.usage.output_tokens == 8
    deltas: dict[str, str] = {}
    with via.responses.stream(model="qwen3", input="Hi") as stream:
        for event in stream:
            if event.type.endswith(".delta"):
                deltas[event.type] = deltas.get(event.type, "") + event.delta  # type: ignore[union-attr]
    assert deltas == {
        "response.reasoning_summary_text.delta": "Let me think",  # where OpenAI's clients look
        "response.output_text.delta": "Hello world",
    }


def test_messages_pass_through_with_the_thinking_block(routed: tuple[str, str]) -> None:
    router, replica = routed
    asks: dict[str, Any] = dict(model="qwen3", max_tokens=50, messages=HI)
    via = anthropic.Anthropic(base_url=router, api_key=KEY, max_retries=0, timeout=60)
    direct = anthropic.Anthropic(base_url=replica, api_key="none", max_retries=0, timeout=60)
    a, b = via.messages.create(**asks), direct.messages.create(**asks)
    text = [block.text for block in a.content if block.type == "text"]
    assert text == ["Hello world"] and a.stop_reason == b.stop_reason == "end_turn"
    # LiteLLM answers Messages through the replica's Responses API, whose default is to
    # think, where Messages' default is not to: 8 tokens (5 of thinking) against 2.
    assert (a.usage.output_tokens, b.usage.output_tokens) == (8, 2)
    with via.messages.stream(**asks) as stream:
        assert "".join(stream.text_stream) == "Hello world"
    # Asked for, the thinking comes back through the router too: LiteLLM turns the
    # Responses reasoning item's summary (where OpenAI's models put it, and so do we since
    # issue 27) into Anthropic's thinking block. Before, it dropped the block.
    thinking = {"type": "enabled", "budget_tokens": 20}
    a = via.messages.create(**asks, thinking=thinking)
    b = direct.messages.create(**asks, thinking=thinking)
    assert [x.type for x in a.content] == [x.type for x in b.content] == ["thinking", "text"]
    assert a.content[0].thinking == b.content[0].thinking == "Let me think"  # type: ignore[union-attr]


def test_a_full_replica_is_stepped_around_and_retry_after_is_honoured(
    routed: tuple[str, str],
) -> None:
    via, _ = _clients(routed)
    # "busy": a replica that always answers 429 beside a real one: every request is
    # answered, by the real one (retried at once, since another replica is healthy).
    for _ in range(4):
        reply = via.chat.completions.create(model="busy", messages=HI)
        assert reply.choices[0].message.content == "Hello world"
    # "once": the only replica says 429, Retry-After: 1; the router waits, then retries.
    reply = via.chat.completions.create(model="once", messages=HI)
    assert reply.choices[0].message.content == "from the fake"
    first, second = Busy.hits["once"][:2]
    assert second - first >= 1.0
