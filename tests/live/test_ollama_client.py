"""Ollama's API with the official `ollama` Python client against a real uvicorn on 127.0.0.1
and the real engine, with an API key sent as the client's Authorization header (as Home
Assistant and Open WebUI send theirs). The "scripted" model thinks "Let me think" (when
thinking is on) and answers "Hello world"; the "tooling" one calls get_time when thinking
is off."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from edge.config import Settings
from tests.support.live_server import WAIT, serving
from tests.support.slow import slow_fixture

KEY = "ollama-local-K3y"
HI: list[Any] = [{"role": "user", "content": "Hi"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The current time.",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]


def client_of(url: str, key: str = KEY) -> ollama.Client:
    return ollama.Client(host=url, headers={"Authorization": f"Bearer {key}"}, timeout=WAIT)


@slow_fixture(scope="module")
def scripted(gguf_of: Callable[[str, str], Path]) -> Iterator[ollama.Client]:
    with serving(gguf_of("scripted", "Q8_0"), Settings(api_key=KEY)) as (url, _):
        yield client_of(url)


@slow_fixture(scope="module")
def tooling(gguf_of: Callable[[str, str], Path]) -> Iterator[ollama.Client]:
    with serving(gguf_of("tooling", "Q8_0"), Settings(api_key=KEY)) as (url, _):
        yield client_of(url)


def test_list_and_show_describe_the_served_model(scripted: ollama.Client) -> None:
    (model,) = scripted.list().models
    assert model.model == "qwen3-test:latest"
    assert model.size is not None and model.size > 0  # the GGUF file's size
    assert model.details is not None and model.details.quantization_level == "Q8_0"
    shown = scripted.show("qwen3-test")
    assert shown.capabilities is not None and set(shown.capabilities) >= {"tools", "thinking"}
    assert shown.modelinfo is not None and shown.modelinfo["qwen3.context_length"] == 2048
    assert shown.modelinfo["qwen3.block_count"] > 0
    (loaded,) = scripted.ps().models
    assert loaded.name == "qwen3-test:latest" and loaded.context_length == 2048


def test_chat_with_and_without_thinking(scripted: ollama.Client) -> None:
    on = scripted.chat(model="qwen3-test", messages=HI, think=True)
    assert (on.message.thinking, on.message.content) == ("Let me think", "Hello world")
    assert on.done and on.done_reason == "stop"
    assert on.eval_count is not None and on.eval_count > 0
    assert on.prompt_eval_count is not None and on.prompt_eval_count > 0
    assert on.total_duration is not None and on.eval_duration is not None
    assert on.total_duration >= on.eval_duration > 0
    off = scripted.chat(model="qwen3:0.6b", messages=HI, think=False)
    assert (off.message.thinking, off.message.content) == (None, "Hello world")


def test_chat_streamed_builds_the_same_answer(scripted: ollama.Client) -> None:
    parts = list(scripted.chat(model="qwen3-test", messages=HI, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Let me think"
    assert "".join(p.message.content or "" for p in parts) == "Hello world"
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done_reason == "stop"
    short = list(
        scripted.chat(model="qwen3-test", messages=HI, stream=True, options={"num_predict": 1})
    )
    assert short[-1].done_reason == "length" and short[-1].eval_count == 1


def test_generate(scripted: ollama.Client) -> None:
    r = scripted.generate(model="qwen3-test", prompt="Hi", think=False)
    assert (r.response, r.done_reason) == ("Hello world", "stop")
    streamed = list(scripted.generate(model="qwen3-test", prompt="Hi", think=True, stream=True))
    assert "".join(p.response or "" for p in streamed) == "Hello world"
    assert "".join(p.thinking or "" for p in streamed) == "Let me think"
    loaded = scripted.generate(model="qwen3-test", prompt="")
    assert loaded.done and loaded.done_reason == "load"


def test_format_takes_the_grammar_path(scripted: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = scripted.chat(
        model="qwen3-test", messages=HI, format=schema, options={"num_predict": 60, "seed": 3}
    )
    assert isinstance(json.loads(r.message.content or "")["ok"], bool)
    assert r.message.thinking is None  # a grammar shapes the whole answer: no thinking


def test_a_tool_call(tooling: ollama.Client) -> None:
    r = tooling.chat(model="qwen3-test", messages=HI, tools=TOOLS, think=False)
    assert r.message.tool_calls is not None
    assert [(c.function.name, dict(c.function.arguments)) for c in r.message.tool_calls] == [
        ("get_time", {})
    ]
    parts = list(
        tooling.chat(model="qwen3-test", messages=HI, tools=TOOLS, think=False, stream=True)
    )
    calls = [c.function.name for p in parts for c in p.message.tool_calls or []]
    assert calls == ["get_time"]


def test_errors_are_the_clients_response_errors(scripted: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        scripted.chat(model="llama3.2", messages=HI)
    assert unknown.value.status_code == 404 and "llama3.2" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as wrong_key:
        client_of(str(scripted._client.base_url), "wrong").list()
    assert wrong_key.value.status_code == 401 and "API key" in wrong_key.value.error
    assert scripted.pull("qwen3:0.6b").status == "success"
    with pytest.raises(ollama.ResponseError) as other:
        scripted.pull("llama3.2")
    assert other.value.status_code == 404
