"""Ollama's API (/api/) over the fake engine: each endpoint's shape, NDJSON framing, think
on and off, tools, format, options → SamplingParams, Ollama's error shape, the key, and the
request sequences of the clients that speak it (reconstructed from their source)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from edge.config import Settings
from edge.errors import ContextFullError, DownloadError
from edge.server import worker
from edge.server.pulls import Puller, PullPlan, PullStep, Throttle
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, run, stream_while_silent

THINKING = ["<think>", "\nLet me", " see", "</think>", "\n\n", "Hel", "lo ✓"]
TOOL_CALL = [
    "<tool_call>",
    '\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n',
    "</tool_call>",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time now",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    }
]
DONE_FIELDS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def ndjson(r: httpx.Response) -> list[dict[str, Any]]:
    """The objects of an NDJSON body, checking that every line is one whole object."""
    assert r.headers["content-type"] == "application/x-ndjson", r.headers
    assert r.text.endswith("\n"), r.text[-80:]
    lines = r.text[:-1].split("\n")
    return [json.loads(line) for line in lines]


def exchange(
    calls: list[tuple[str, str, dict[str, Any] | None]],
    answers: list[tuple[list[str], str]] = (),  # type: ignore[assignment]
    options: Settings | None = None,
    headers: dict[str, str] | None = None,
    pull: Puller | None = None,
) -> tuple[list[httpx.Response], FakeEngine]:
    """Run (method, path, body) calls in order on one app; the fake answers `answers`."""
    engine = FakeEngine()
    for pieces, reason in answers:
        engine.enqueue(pieces, reason)

    async def go() -> list[httpx.Response]:
        async with client_of(engine, options, pull=pull) as (client, _):
            return [
                await client.request(method, path, json=body, headers=headers)
                for method, path, body in calls
            ]

    return run(go), engine


def one(
    method: str, path: str, body: dict[str, Any] | None = None, *answer: Any
) -> tuple[httpx.Response, FakeEngine]:
    rs, engine = exchange([(method, path, body)], [answer] if answer else [])
    return rs[0], engine


# --- the model's card ----------------------------------------------------------------------


def test_version_is_one_clients_accept() -> None:
    r, _ = one("GET", "/api/version")
    version = r.json()["version"]
    # Copilot's provider refuses servers under 0.6.4 (it compares dotted integers) and Open
    # WebUI parses the same way: plain integers, new enough.
    parts = tuple(int(p) for p in version.split("."))
    assert r.status_code == 200 and len(parts) == 3 and parts >= (0, 9, 0)


def test_tags_lists_the_served_model_with_ollamas_fields() -> None:
    r, _ = one("GET", "/api/tags")
    (model,) = r.json()["models"]
    assert model["name"] == model["model"] == "fake:latest"
    assert set(model) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert model["modified_at"].endswith("Z") and len(model["digest"]) == 64
    assert model["details"]["format"] == "gguf" and model["details"]["family"] == "qwen3"
    assert model["details"]["parameter_size"] == "0.6B"


def test_show_says_what_the_model_can_do() -> None:
    r, _ = one("POST", "/api/show", {"model": "fake"})
    body = r.json()
    assert set(body["capabilities"]) == {"completion", "tools", "thinking"}
    info = body["model_info"]
    # Copilot reads the context as model_info[f"{general.architecture}.context_length"].
    assert info[f"{info['general.architecture']}.context_length"] == 4096  # the fake's n_ctx
    assert "<|im_start|>" in body["template"] and "temperature 0.6" in body["parameters"]
    assert body["details"]["family"] == "qwen3"
    old, _ = one("POST", "/api/show", {"name": "fake:latest"})  # older clients send `name`
    assert old.status_code == 200


def test_ps_shows_the_loaded_model_until_the_server_stops() -> None:
    r, _ = one("GET", "/api/ps")
    (model,) = r.json()["models"]
    assert model["name"] == "fake:latest" and model["context_length"] == 4096
    assert model["expires_at"] > "2100"


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["fake", "fake:latest", "FAKE:latest", "qwen3:0.6b", "qwen3:0.6b-q8_0", ""]
)
def test_the_served_names_are_accepted(name: str) -> None:
    r, engine = one(
        "POST", "/api/chat", {"model": name, "messages": HI, "stream": False}, ["ok"], "stop"
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == (name or "fake:latest")  # the name the client used
    assert len(engine.jobs) == 1


@pytest.mark.parametrize("name", ["llama3.2:latest", "qwen3:8b", "qwen3", "fake:7b"])
def test_other_models_are_not_found_as_ollama_says(name: str) -> None:
    for path, body in (
        ("/api/chat", {"model": name, "messages": HI}),
        ("/api/generate", {"model": name, "prompt": "Hi"}),
        ("/api/show", {"model": name}),
    ):
        r, engine = one("POST", path, body)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"].startswith(f"model '{name}' not found")
        assert set(r.json()) == {"error"} and not engine.jobs


def test_pull_of_the_served_model_succeeds_at_once_and_others_fail() -> None:
    rs, _ = exchange(
        [
            ("POST", "/api/pull", {"model": "qwen3:0.6b"}),
            ("POST", "/api/pull", {"model": "fake", "stream": False}),
            ("POST", "/api/pull", {"model": "llama3.2"}),
        ]
    )
    assert ndjson(rs[0])[-1] == {"status": "success"}
    assert rs[1].json() == {"status": "success"}
    assert rs[2].status_code == 404 and "edge-qwen pull" in rs[2].json()["error"]


class FakePuller:
    """A puller that knows `hf.co/…` names and the store name `stored-q8_0`; its pull
    reports `steps` and then raises `fail`, if given, after `release` is set."""

    def __init__(self, steps: list[PullStep] = (), fail: Exception | None = None) -> None:  # type: ignore[assignment]
        self.steps, self.fail = list(steps), fail
        self.asked: list[str] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.release.set()

    def __call__(self, name: str) -> PullPlan | None:
        self.asked.append(name)
        if name == "stored-q8_0":
            return PullPlan(name, True, self.run)
        return PullPlan("repo-q8_0", False, self.run) if name.startswith("hf.co/") else None

    def run(self, progress: Callable[[PullStep], None]) -> None:
        self.started.set()
        assert self.release.wait(10)
        for step in self.steps:
            progress(step)
        if self.fail is not None:
            raise self.fail


BYTES = [PullStep("Converting to GGUF", n, 1000) for n in range(0, 1001)]


def test_a_mapped_name_is_pulled_with_ollamas_progress_lines_throttled() -> None:
    puller = FakePuller([PullStep("downloading o/repo"), *BYTES, PullStep("quantizing")])
    rs, _ = exchange([("POST", "/api/pull", {"model": "hf.co/o/repo"})], pull=puller)
    lines = ndjson(rs[0])
    assert rs[0].status_code == 200 and puller.asked == ["hf.co/o/repo"]
    assert lines[:2] == [{"status": "pulling manifest"}, {"status": "downloading o/repo"}]
    progress = [line for line in lines if "total" in line]
    # 1001 callbacks in a few milliseconds: the first and the last bytes pass, few between
    # (the bound leaves room for a loaded machine; the clock test below is the exact one).
    assert 2 <= len(progress) <= 20, progress
    assert progress[0]["completed"] == 0 and progress[-1]["completed"] == 1000
    digest = progress[0]["digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert {(p["status"], p["digest"], p["total"]) for p in progress} == {
        (f"pulling {digest[7:19]}", digest, 1000)
    }
    assert lines[-4:] == [
        {"status": "quantizing"},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]


def test_the_throttle_passes_a_new_status_and_last_bytes_and_ten_a_second() -> None:
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    passed = []
    for i in range(100):  # one step every 10 ms for a second
        now[0] = i / 100
        passed.append(throttle.passes(PullStep("a", i, 100)))
    assert sum(passed) == 10
    assert throttle.passes(PullStep("a", 100, 100))  # the last bytes
    assert throttle.passes(PullStep("b", 1, 100))  # a new step
    assert throttle.passes(PullStep("status only"))


def test_a_failed_pull_ends_its_stream_with_an_error_line_and_not_streamed_is_a_status() -> None:
    fail = DownloadError("The hub could not be reached.", "Check the network.")
    rs, _ = exchange(
        [
            ("POST", "/api/pull", {"model": "hf.co/o/repo"}),
            ("POST", "/api/pull", {"model": "hf.co/o/repo", "stream": False}),
        ],
        pull=FakePuller(BYTES[:2], fail=fail),
    )
    lines = ndjson(rs[0])
    assert rs[0].status_code == 200 and lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"error": "The hub could not be reached. Check the network."}
    assert {"status": "success"} not in lines
    assert rs[1].status_code == 500 and rs[1].json() == lines[-1]


def test_a_pull_not_streamed_is_one_success_object_at_the_end() -> None:
    puller = FakePuller(BYTES)
    rs, _ = exchange(
        [("POST", "/api/pull", {"model": "hf.co/o/repo", "stream": False})], pull=puller
    )
    assert rs[0].json() == {"status": "success"} and puller.started.is_set()


def test_a_stored_or_served_name_succeeds_at_once_and_an_unknown_one_is_a_404() -> None:
    puller = FakePuller()
    rs, _ = exchange(
        [
            ("POST", "/api/pull", {"model": "stored-q8_0"}),
            ("POST", "/api/pull", {"model": "qwen3:0.6b", "stream": False}),
            ("POST", "/api/pull", {"model": "llama3.2"}),
        ],
        pull=puller,
    )
    assert ndjson(rs[0]) == [{"status": "pulling manifest"}, {"status": "success"}]
    assert rs[1].json() == {"status": "success"}
    assert rs[2].status_code == 404 and set(rs[2].json()) == {"error"}
    assert "hf.co/OWNER/REPO" in rs[2].json()["error"]
    assert puller.asked == ["stored-q8_0", "llama3.2"]  # the served name never reaches it
    assert not puller.started.is_set()


def test_a_second_pull_while_one_runs_is_a_429_and_the_gate_reopens() -> None:
    puller = FakePuller()
    puller.release.clear()

    async def go() -> list[httpx.Response]:
        async with client_of(FakeEngine(), pull=puller) as (client, _):
            body = {"model": "hf.co/o/repo", "stream": False}
            first = asyncio.create_task(client.post("/api/pull", json=body))
            await asyncio.to_thread(puller.started.wait, 10)
            second = await client.post("/api/pull", json=body)
            puller.release.set()
            return [second, await first, await client.post("/api/pull", json=body)]

    busy, first, again = run(go)
    assert busy.status_code == 429 and "Another pull (repo-q8_0)" in busy.json()["error"]
    assert busy.headers["retry-after"]
    assert first.json() == again.json() == {"status": "success"}


# --- chat and generate ---------------------------------------------------------------------


def test_chat_streams_ndjson_by_default_and_ends_with_the_counts() -> None:
    r, engine = one("POST", "/api/chat", {"model": "fake", "messages": HI}, THINKING, "stop")
    lines = ndjson(r)
    assert all(line["model"] == "fake" and line["created_at"].endswith("Z") for line in lines)
    assert all(line["done"] is False for line in lines[:-1])
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    content = "".join(line["message"]["content"] for line in lines)
    assert (thinking, content) == ("Let me see", "Hello ✓")
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert DONE_FIELDS <= set(last) and all(isinstance(last[k], int) for k in DONE_FIELDS)
    assert last["eval_count"] == len(THINKING)
    assert last["prompt_eval_count"] == len(engine.jobs[0].prompt)
    assert last["total_duration"] >= last["eval_duration"] > 0
    assert last["message"] == {"role": "assistant", "content": ""}


def test_chat_not_streamed_is_one_object_with_the_whole_message() -> None:
    r, _ = one("POST", "/api/chat", {"messages": HI, "stream": False}, THINKING, "length")
    body = r.json()
    assert r.headers["content-type"] == "application/json"
    assert body["message"] == {"role": "assistant", "content": "Hello ✓", "thinking": "Let me see"}
    assert body["done"] is True and body["done_reason"] == "length" and DONE_FIELDS <= set(body)


def test_think_false_renders_the_empty_think_block_and_uses_the_plain_sampling() -> None:
    off, engine_off = one(
        "POST", "/api/chat", {"messages": HI, "think": False, "stream": False}, ["Hi"], "stop"
    )
    on, engine_on = one(
        "POST", "/api/chat", {"messages": HI, "think": True, "stream": False}, ["Hi"], "stop"
    )
    assert off.status_code == on.status_code == 200
    p_off, p_on = engine_off.jobs[0], engine_on.jobs[0]
    assert bytes(p_off.prompt).decode().endswith("<think>\n\n</think>\n\n")
    assert not bytes(p_on.prompt).decode().endswith("</think>\n\n")
    assert (p_off.params.temperature, p_on.params.temperature) == (0.7, 0.6)
    # Unset: a /no_think in the last user message decides, else Qwen3's default (on).
    no_think = [{"role": "user", "content": "Hi /no_think"}]
    soft, engine_soft = one(
        "POST", "/api/chat", {"messages": no_think, "stream": False}, ["Hi"], "stop"
    )
    assert engine_soft.jobs[0].params.temperature == 0.7 and soft.status_code == 200
    level, engine_level = one(
        "POST", "/api/chat", {"messages": HI, "think": "high", "stream": False}, ["Hi"], "stop"
    )
    assert engine_level.jobs[0].params.temperature == 0.6 and level.status_code == 200


def test_generate_streams_response_and_thinking_and_folds_them() -> None:
    rs, engine = exchange(
        [
            ("POST", "/api/generate", {"prompt": "Hi", "system": "Be brief."}),
            ("POST", "/api/generate", {"prompt": "Hi", "stream": False}),
        ],
        [(THINKING, "stop"), (THINKING, "stop")],
    )
    lines = ndjson(rs[0])
    assert "".join(line["response"] for line in lines) == "Hello ✓"
    assert "".join(line.get("thinking", "") for line in lines) == "Let me see"
    assert lines[-1]["done"] is True and DONE_FIELDS <= set(lines[-1])
    assert "message" not in lines[0]
    prompt = bytes(engine.jobs[0].prompt).decode()
    assert (
        prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
        and "<|im_start|>user\nHi" in prompt
    )
    whole = rs[1].json()
    assert (whole["response"], whole["thinking"], whole["done_reason"]) == (
        "Hello ✓",
        "Let me see",
        "stop",
    )


def test_a_raw_generate_sends_the_prompt_as_it_is_and_splits_nothing() -> None:
    body = {"prompt": "<|im_start|>user\nHi", "raw": True, "stream": False}
    r, engine = one("POST", "/api/generate", body, THINKING, "stop")
    assert bytes(engine.jobs[0].prompt).decode() == "<|im_start|>user\nHi"
    assert r.json()["response"] == "".join(THINKING) and "thinking" not in r.json()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "def f(", "suffix": "return 1"}, "suffix"),
        ({"prompt": "Hi", "template": "{{ .Prompt }}"}, "template"),
        ({"prompt": "Hi", "context": [1, 2, 3]}, "context"),
        ({"prompt": "Hi", "images": ["aGk="]}, "images"),
        ({"prompt": "Hi", "logprobs": True}, "logprobs"),
    ],
)
def test_what_generate_cannot_do_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    r, engine = one("POST", "/api/generate", body)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    assert param in r.json()["error"], r.text
    assert not engine.jobs


def test_load_and_unload_requests_answer_at_once() -> None:
    rs, engine = exchange(
        [
            ("POST", "/api/generate", {"model": "fake"}),
            ("POST", "/api/chat", {"model": "fake", "messages": []}),
            ("POST", "/api/generate", {"model": "fake", "prompt": "", "keep_alive": 0}),
            ("POST", "/api/chat", {"model": "fake", "keep_alive": "0s", "stream": False}),
        ]
    )
    reasons = [r.json()["done_reason"] for r in rs]
    assert reasons == ["load", "load", "unload", "unload"]
    assert all(r.json()["done"] is True for r in rs) and not engine.jobs
    assert rs[0].json()["response"] == "" and rs[1].json()["message"]["content"] == ""


def test_tools_come_back_as_ollama_tool_calls_with_argument_objects() -> None:
    rs, engine = exchange(
        [
            ("POST", "/api/chat", {"messages": HI, "tools": TOOLS, "stream": False}),
            ("POST", "/api/chat", {"messages": HI, "tools": TOOLS}),
        ],
        [(TOOL_CALL, "stop"), (TOOL_CALL, "stop")],
    )
    (call,) = rs[0].json()["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time"
    assert call["function"]["arguments"] == {"zone": "UTC"}
    assert rs[0].json()["done_reason"] == "stop"
    streamed = [line for line in ndjson(rs[1]) if "tool_calls" in line["message"]]
    assert [line["message"]["tool_calls"][0]["function"]["arguments"] for line in streamed] == [
        {"zone": "UTC"}
    ]
    assert "get_time" in bytes(engine.jobs[0].prompt).decode()  # the template laid the tool out


def test_a_tool_round_trip_renders_the_call_and_its_result() -> None:
    """Home Assistant sends the assistant's call back with its arguments as an object and
    the result as a `tool` message (homeassistant/components/ollama/entity.py)."""
    messages = [
        {"role": "system", "content": "You control the house."},
        {"role": "user", "content": "What time is it?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_time", "arguments": {"zone": "UTC"}}}],
        },
        {"role": "tool", "content": '{"data": "12:00", "error": null}', "tool_name": "get_time"},
    ]
    r, engine = one(
        "POST",
        "/api/chat",
        {"messages": messages, "tools": TOOLS, "stream": False},
        ["Noon."],
        "stop",
    )
    assert r.json()["message"]["content"] == "Noon."
    prompt = bytes(engine.jobs[0].prompt).decode()
    assert '{"name": "get_time", "arguments": {"zone": "UTC"}}' in prompt
    assert "<tool_response>\n" + '{"data": "12:00", "error": null}' in prompt


def test_format_json_and_a_schema_take_the_grammar_path_with_thinking_off() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    rs, engine = exchange(
        [
            ("POST", "/api/chat", {"messages": HI, "format": "json", "stream": False}),
            ("POST", "/api/generate", {"prompt": "Hi", "format": schema, "stream": False}),
            ("POST", "/api/chat", {"messages": HI, "format": "", "stream": False}),
        ],
        [(['{"a": 1}'], "stop")] * 3,
    )
    assert [r.status_code for r in rs] == [200, 200, 200]
    as_json, as_schema, plain = (job.params for job in engine.jobs)
    assert as_json.json_schema == {"type": "object"} and as_json.grammar
    assert as_schema.json_schema == schema and as_schema.grammar
    assert plain.grammar is None and plain.json_schema is None
    assert as_json.temperature == as_schema.temperature == 0.7  # non-thinking sampling
    assert bytes(engine.jobs[0].prompt).decode().endswith("<think>\n\n</think>\n\n")
    assert json.loads(rs[0].json()["message"]["content"]) == {"a": 1}


def test_a_schema_the_grammar_cannot_take_is_a_400_naming_format() -> None:
    bad = {"type": "string", "minLength": 10**9}
    r, engine = one("POST", "/api/chat", {"messages": HI, "format": bad})
    assert r.status_code == 400 and "minLength" in r.json()["error"] and not engine.jobs


def test_options_map_to_the_sampling_params() -> None:
    options = {
        "num_ctx": 8192.0,  # Home Assistant's number boxes send floats; ignored all the same
        "num_predict": 42,
        "temperature": 0.2,
        "top_k": 7,
        "top_p": 0.5,
        "min_p": 0.05,
        "stop": ["\n\n", "END"],
        "seed": 1234,
        "repeat_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "num_gpu": 99,  # unknown here: ignored
        "mirostat": 0,
    }
    r, engine = one(
        "POST", "/api/chat", {"messages": HI, "options": options, "stream": False}, ["ok"], "stop"
    )
    assert r.status_code == 200, r.text
    p = engine.jobs[0].params
    assert (p.max_tokens, p.temperature, p.top_k, p.top_p, p.min_p) == (42, 0.2, 7, 0.5, 0.05)
    assert (p.stop, p.seed) == (["\n\n", "END"], 1234)
    assert (p.repeat_penalty, p.presence_penalty, p.frequency_penalty) == (1.1, 0.5, 0.25)
    # Unset: Qwen's thinking defaults; num_predict -1 and -2 mean no limit.
    for unlimited in (-1, -2):
        r, engine = one(
            "POST",
            "/api/chat",
            {"messages": HI, "options": {"num_predict": unlimited}, "stream": False},
            ["ok"],
            "stop",
        )
        p = engine.jobs[0].params
        assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.repeat_penalty) == (
            None,
            0.6,
            0.95,
            20,
            1.0,
        )


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 9},
        {"top_p": 0},
        {"top_k": -1},
        {"top_k": 2.5},
        {"num_predict": "8"},  # a whole float passes (num_ctx above); a string never
        {"stop": "x"},
        {"repeat_penalty": 0},
    ],
)
def test_options_out_of_range_are_400s(options: dict[str, Any]) -> None:
    r, engine = one("POST", "/api/chat", {"messages": HI, "options": options})
    assert r.status_code == 400 and "options" in r.json()["error"] and not engine.jobs


# --- errors and the key --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/chat", {"messages": "hi"}, 400),
        ("POST", "/api/chat", {"messages": [{"role": "robot", "content": "x"}]}, 400),
        ("POST", "/api/chat", {"messages": HI, "stream": "yes"}, 400),
        (
            "POST",
            "/api/chat",
            {"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
            400,
        ),
        ("POST", "/api/generate", {"prompt": 3}, 400),
        ("GET", "/api/chat", None, 405),
        ("POST", "/api/embed", {"model": "fake", "input": "x"}, 404),
        ("POST", "/api/create", {"model": "x"}, 404),
    ],
)
def test_errors_are_ollamas_shape(method: str, path: str, body: Any, status: int) -> None:
    r, _ = one(method, path, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error"} and isinstance(r.json()["error"], str) and r.json()["error"]


def test_a_body_is_json_whatever_its_content_type_as_ollama_reads_it() -> None:
    """Ollama's documented curl lines send no Content-Type (curl says form-urlencoded)."""
    body = json.dumps({"messages": HI, "stream": False}).encode()
    engine = FakeEngine()

    async def go() -> list[httpx.Response]:
        async with client_of(engine) as (client, _):
            form = {"content-type": "application/x-www-form-urlencoded"}
            return [
                await client.post("/api/chat", content=body, headers=form),
                await client.post(
                    "/api/chat", content=b"Hi", headers={"content-type": "text/plain"}
                ),
            ]

    as_form, not_json = run(go)
    assert as_form.status_code == 200 and as_form.json()["message"]["content"] == "ok"
    assert not_json.status_code == 400 and set(not_json.json()) == {"error"}


def test_an_error_after_the_stream_began_is_an_error_line() -> None:
    engine = FakeEngine()
    engine.enqueue_error(ContextFullError("The KV cache is full."))

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post("/api/chat", json={"messages": HI})

    r = run(go)
    assert r.status_code == 200  # the status line was already sent
    assert ndjson(r) == [{"error": "The KV cache is full."}]


def test_the_prompt_wait_sends_no_bytes_an_ndjson_client_would_choke_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "KEEPALIVE_AFTER", 0.05)
    r = stream_while_silent("/api/chat", {"messages": HI})
    lines = ndjson(r)  # every line parses: no SSE comment, no empty line
    assert lines[0]["message"]["content"] == "late" and lines[-1]["done"] is True


def test_the_key_guards_ollamas_api_as_a_bearer_token() -> None:
    keyed = Settings(api_key="k3y")
    calls = [("GET", "/api/tags", None), ("POST", "/api/chat", {"messages": HI, "stream": False})]
    refused, engine = exchange(calls, options=keyed)
    assert [r.status_code for r in refused] == [401, 401] and not engine.jobs
    assert set(refused[0].json()) == {"error"} and "API key" in refused[0].json()["error"]
    served, engine = exchange(calls, [(["ok"], "stop")], keyed, {"authorization": "Bearer k3y"})
    assert [r.status_code for r in served] == [200, 200] and len(engine.jobs) == 1


def test_metrics_count_ollamas_paths_by_name() -> None:
    rs, _ = exchange(
        [
            ("GET", "/api/tags", None),
            ("POST", "/api/chat", {"messages": HI, "stream": False}),
            ("POST", "/api/generate", {"prompt": "Hi", "stream": False}),
            ("GET", "/api/nothing", None),
            ("GET", "/metrics", None),
        ]
    )
    page = rs[-1].text
    for api, status in (
        ("ollama", 200),
        ("ollama_chat", 200),
        ("ollama_generate", 200),
        ("ollama", 404),
    ):
        assert f'edge_requests_total{{api="{api}",status="{status}"}}' in page, page


# --- the clients' sequences ----------------------------------------------------------------


def test_open_webuis_ollama_connection() -> None:
    """Open WebUI, backend/open_webui/routers/ollama.py: the version (lowest across
    connections, parsed as dotted integers), the models from /api/tags keyed by `model`,
    their expiry from /api/ps (datetime.fromisoformat), a streamed chat with the model
    name given `:latest` when bare, options from the model's settings and keep_alive; and
    an unload as /api/generate {"prompt": "", "keep_alive": 0}."""
    from datetime import datetime

    chat = {
        "model": "fake:latest",
        "messages": [{"role": "system", "content": "Be nice."}, *HI],
        "stream": True,
        "options": {"temperature": 0.8, "num_ctx": 2048},
        "keep_alive": "5m",
    }
    rs, engine = exchange(
        [
            ("GET", "/api/version", None),
            ("GET", "/api/tags", None),
            ("GET", "/api/ps", None),
            ("POST", "/api/chat", chat),
            ("POST", "/api/chat", {**chat, "stream": False, "format": "json"}),
            ("POST", "/api/generate", {"model": "fake:latest", "keep_alive": 0, "prompt": ""}),
        ],
        [(THINKING, "stop"), (['{"title": "Hi"}'], "stop")],
    )
    assert tuple(map(int, rs[0].json()["version"].split("."))) >= (0, 1, 0)
    models = {m["model"]: m for m in rs[1].json()["models"]}
    loaded = {m["name"]: m["expires_at"] for m in rs[2].json()["models"]}
    assert int(datetime.fromisoformat(loaded["fake:latest"]).timestamp()) > 0
    assert "fake:latest" in models
    assert ndjson(rs[3])[-1]["done"] is True
    assert json.loads(rs[4].json()["message"]["content"]) == {"title": "Hi"}
    assert rs[5].json()["done_reason"] == "unload"
    assert engine.jobs[0].params.temperature == 0.8 and len(engine.jobs) == 2


def test_home_assistants_ollama_integration() -> None:
    """Home Assistant, homeassistant/components/ollama/: config_flow lists the models and
    compares the chosen name with each entry's `model` (else it pulls); entity.py streams a
    chat with the tools, keep_alive -1 (an integer), options {"num_ctx": 8192}, think
    unset, and after a tool call sends the call back (arguments an object) and the result
    as a `tool` message, in a loop until no tool is called."""
    keep = {"keep_alive": -1, "options": {"num_ctx": 8192}, "tools": TOOLS, "stream": True}
    first = {
        "model": "qwen3:0.6b",
        "messages": [{"role": "system", "content": "Home."}, *HI],
        **keep,
    }
    call = {"function": {"name": "get_time", "arguments": {"zone": "UTC"}}}
    second = {
        **first,
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": '{"data": "12:00", "error": null}'},
        ],
    }
    rs, engine = exchange(
        [
            ("GET", "/api/tags", None),
            ("POST", "/api/pull", {"model": "qwen3:0.6b", "stream": True}),
            ("POST", "/api/chat", first),
            ("POST", "/api/chat", second),
        ],
        [(TOOL_CALL, "stop"), (["It is ", "noon."], "stop")],
    )
    assert rs[1].status_code == 200 and ndjson(rs[1])[-1] == {"status": "success"}
    calls = [c for line in ndjson(rs[2]) for c in line["message"].get("tool_calls", [])]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_time", {"zone": "UTC"})
    ]
    answer = ndjson(rs[3])
    assert "".join(line["message"]["content"] for line in answer) == "It is noon."
    assert answer[-1]["done_reason"] == "stop"
    assert len(engine.jobs) == 2


def test_copilots_ollama_provider() -> None:
    """Copilot Chat, src/extension/byok/vscode-node/ollamaProvider.ts: /api/version must
    be at least 0.6.4; each model of /api/tags (by `model`) gets a POST /api/show {model},
    whose model_info[`${general.architecture}.context_length`] sizes the prompt and whose
    capabilities say tools; the chats then go to /v1/chat/completions."""
    rs, engine = exchange(
        [("GET", "/api/version", None), ("GET", "/api/tags", None)],
    )
    assert tuple(map(int, rs[0].json()["version"].split("."))) >= (0, 6, 4)
    (model,) = [m["model"] for m in rs[1].json()["models"]]
    rs, engine = exchange(
        [
            ("POST", "/api/show", {"model": model}),
            ("POST", "/v1/chat/completions", {"model": model, "messages": HI, "tools": TOOLS}),
        ],
        [(["Hello"], "stop")],
    )
    info = rs[0].json()["model_info"]
    context = info[f"{info['general.architecture']}.context_length"]
    assert context == 4096 and "tools" in rs[0].json()["capabilities"]
    assert info["general.basename"]
    assert rs[1].json()["choices"][0]["message"]["content"] == "Hello"
