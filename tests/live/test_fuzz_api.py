"""Hostile clients against a real uvicorn server on 127.0.0.1 (scripted tiny model).

Two halves:

- schemathesis generates requests from the app's own OpenAPI schema (/openapi.json), for
  every operation, schema-valid ("positive") and schema-invalid ("negative") ones. Each
  answer must be below 500, every error must be OpenAI's ``{"error": {...}}`` object (or
  Anthropic's ``{"type": "error", ...}`` on /v1/messages, Ollama's ``{"error": "..."}`` on
  /api/), and nothing may hang (every call has a timeout; the whole run a time budget).
- hand-written hostile cases: wrong types, huge numbers, huge, deep and broken bodies,
  chunked bodies over the limit, slow clients trickling bytes over a raw socket. After each
  the server must still answer a normal request.

Size: ``EDGE_QWEN_FUZZ_EXAMPLES`` schema-valid cases per operation (default 150), five times
as many schema-invalid ones (they are refused quickly), a tenth with an API key: about 1,900
requests, two to three minutes on a 2-core machine. The long run::

    EDGE_QWEN_FUZZ_EXAMPLES=3000 pytest tests/live/test_fuzz_api.py
"""

from __future__ import annotations

import functools
import json
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from edge.config import Settings
from tests.support.live_server import error_of, serving
from tests.support.prompts import HI
from tests.support.slow import slow_fixture

EXAMPLES = int(os.environ.get("EDGE_QWEN_FUZZ_EXAMPLES", "150"))
BUDGET_S = max(300.0, EXAMPLES * 2.0)  # per operation and mode; a hang fails, not waits
CALL_TIMEOUT = 30.0
KEY = "fuzz-key"
SMALL_LIMIT = 64 * 1024
BODY_TIMEOUT = 3.0


@slow_fixture(scope="module")
def server(gguf_of: Callable[[str, str], Path]) -> Iterator[tuple[str, Any]]:
    with serving(gguf_of("scripted", "Q8_0"), n_ctx=512) as up:
        yield up


@slow_fixture(scope="module")
def keyed(gguf_of: Callable[[str, str], Path]) -> Iterator[str]:
    opts = Settings(api_key=KEY, max_body_bytes=SMALL_LIMIT, body_timeout_s=BODY_TIMEOUT)
    with serving(gguf_of("scripted", "Q8_0"), opts, n_ctx=512) as (url, _):
        yield url


def assert_openai_error(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A 4xx (one of `statuses` if given) with exactly OpenAI's error object."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    if statuses:
        assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = error_of(r)
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert err["param"] is None or isinstance(err["param"], str)
    assert err["code"] is None or isinstance(err["code"], str)
    return err


def assert_alive(url: str, headers: dict[str, str] | None = None) -> None:
    """The server answers a normal request, correctly and quickly."""
    t0 = time.monotonic()
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": HI, "max_tokens": 20},
        headers=headers,
        timeout=CALL_TIMEOUT,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello world"
    assert time.monotonic() - t0 < 10


def post(url: str, body: Any, path: str = "/v1/chat/completions", **kw: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=CALL_TIMEOUT, **kw)


def post_bytes(url: str, body: bytes, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(
        f"{url}{path}",
        content=body,
        timeout=CALL_TIMEOUT,
        headers={"content-type": "application/json"},
    )


# ---------------------------------------------------------------- schemathesis, from /openapi.json

TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
RESPONSES_TOKEN_FIELDS = ("max_output_tokens",)  # the Responses API's name


def small_tokens(case: schemathesis.Case) -> schemathesis.Case:
    """Keep generations short (the tiny model on 2 CPU cores makes ~30 tokens/s, and a
    random request may well never stop): token counts that would run are cut to 1-4, and
    requests that give none (or null) get 4. Counts too big for the context stay: they must get
    a 400. Huge and wrong values are the hand-written cases' business too."""
    body = case.body
    if isinstance(body, dict) and case.path in OLLAMA_GENERATIONS:
        return small_ollama(body, case)
    if not isinstance(body, dict) or not case.path.startswith("/v1/"):
        return case
    fields = RESPONSES_TOKEN_FIELDS if case.path == "/v1/responses" else TOKEN_FIELDS
    for key in fields:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 4 < value < 10**6:
            body[key] = 1 + value % 4
    if case.path == "/v1/messages":
        return case  # max_tokens is required there: a case without it must get its 400
    if all(body.get(key) is None for key in fields):
        # Absent or null (the default may be hundreds of tokens); a wrong value, which
        # a negative case may be about, is left alone.
        body[fields[0]] = 4
    return case


OLLAMA_GENERATIONS = ("/api/chat", "/api/generate")


def small_ollama(body: dict[str, Any], case: schemathesis.Case) -> schemathesis.Case:
    """Ollama's token count is `options.num_predict` (-1: no limit): a whole number outside
    1-4, or none, becomes 4; a wrong value is left to the case it belongs to."""
    if body.get("options") is None:
        body["options"] = {}
    options = body["options"]
    if isinstance(options, dict):
        value = options.get("num_predict")
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if value is None or (whole and not isinstance(value, bool) and not 1 <= value <= 4):
            options["num_predict"] = 4
    return case


def check_answer(case: schemathesis.Case, r: schemathesis.Response) -> None:
    """Below 500; errors in the API's shape; successes complete (JSON or a whole stream)."""
    assert r.status_code < 500, (case.as_curl_command(), r.status_code, r.text[:500])
    ctype = r.headers.get("content-type", [""])[0]
    if r.status_code >= 400:
        assert ctype.startswith("application/json"), (case.as_curl_command(), ctype)
        check_error(case.path, json.loads(r.content))
    elif case.path.startswith("/v1/messages") and case.method == "POST":
        check_anthropic_answer(case.path, ctype, r)
    elif case.path == "/v1/responses" and case.method == "POST":
        check_response(r, ctype)
    elif case.path.startswith("/api/") and case.method == "POST":
        check_ollama_answer(case.path, ctype, r)
    elif case.path.startswith("/v1/") and case.method == "POST":
        if ctype.startswith("text/event-stream"):
            # (schemathesis reads at most `max-stream-events` events of a stream)
            assert r.stream_cut_short or r.content.endswith(b"data: [DONE]\n\n"), r.content[-300:]
            assert b'"error"' not in r.content, r.content[-500:]  # no in-band failure either
        else:
            assert json.loads(r.content)["choices"][0]["finish_reason"] in (
                "stop",
                "length",
                "tool_calls",
            )


def check_error(path: str, body: Any) -> None:
    """OpenAI's error object, or Anthropic's on its Messages paths, Ollama's on /api/."""
    if path.startswith("/api/"):
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
        return
    if path.startswith("/v1/messages"):
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
    else:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["type"]


def check_anthropic_answer(path: str, ctype: str, r: schemathesis.Response) -> None:
    """A token count, a whole message, or a stream that ends with message_stop."""
    if path.endswith("/count_tokens"):
        assert isinstance(json.loads(r.content)["input_tokens"], int)
    elif ctype.startswith("text/event-stream"):
        done = r.content.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        assert r.stream_cut_short or done, r.content[-300:]
        assert b"event: error" not in r.content, r.content[-500:]
    else:
        stop = json.loads(r.content)["stop_reason"]
        assert stop in ("end_turn", "max_tokens", "stop_sequence", "tool_use")


def check_ollama_answer(path: str, ctype: str, r: schemathesis.Response) -> None:
    """NDJSON whose every line is an object and whose last says done (or success, for a
    pull), never an error line; or one object that is done."""
    if ctype.startswith("application/x-ndjson"):
        lines = [json.loads(line) for line in r.content.decode().splitlines()]
        assert all("error" not in line for line in lines), r.content[-500:]
        last = lines[-1]
        assert last.get("done") is True or last.get("status") == "success", r.content[-300:]
    elif path in OLLAMA_GENERATIONS:
        assert json.loads(r.content)["done"] is True
    else:
        assert isinstance(json.loads(r.content), dict)


def check_response(r: schemathesis.Response, ctype: str) -> None:
    """A Responses answer: a finished response object, or a stream that ends with one
    (named events, no [DONE]) and never fails in-band."""
    if ctype.startswith("text/event-stream"):
        assert b"event: response.failed" not in r.content, r.content[-500:]
        last = r.content.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert r.stream_cut_short or last.startswith(
            (b"event: response.completed", b"event: response.incomplete")
        ), r.content[-300:]
    else:
        assert json.loads(r.content)["status"] in ("completed", "incomplete")


def fuzz(
    url: str, mode: GenerationMode, headers: dict[str, str] | None = None, examples: int = EXAMPLES
) -> dict[str, int]:
    """Run `examples` generated cases per operation against the server; return counts."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if mode == GenerationMode.NEGATIVE and op.method.upper() in ("GET", "DELETE"):
            continue  # no body, at most a string in the path: nothing can be schema-invalid
        fuzz_operation(url, op, mode, headers, examples, counts)
    return counts


def fuzz_operation(
    url: str,
    op: Any,
    mode: GenerationMode,
    headers: dict[str, str] | None,
    examples: int,
    counts: dict[str, int],
) -> None:
    label = f"{op.method.upper()} {op.path}"
    deadline = time.monotonic() + BUDGET_S
    # The schema's own word: statuses it lists, error bodies of its ErrorResponse shape.
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    if mode == GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(op.as_strategy(generation_mode=mode).map(small_tokens))
    def run(case: schemathesis.Case) -> None:
        assert time.monotonic() < deadline, f"{label}: over the time budget"
        r = case.call(base_url=url, headers=headers, timeout=CALL_TIMEOUT)
        counts[label] = counts.get(label, 0) + 1
        check_answer(case, r)
        case.validate_response(r, checks=checks, headers=headers)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_schemathesis(server: tuple[str, Any], mode: GenerationMode) -> None:
    url, _ = server
    t0 = time.monotonic()
    counts = fuzz(url, mode, examples=EXAMPLES * (5 if mode == GenerationMode.NEGATIVE else 1))
    print(
        f"schemathesis {mode.value}: {sum(counts.values())} cases in "
        f"{time.monotonic() - t0:.0f}s: {counts}"
    )
    assert set(counts) >= {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "POST /v1/responses",
        "POST /api/chat",
        "POST /api/generate",
        "POST /api/show",
    }
    assert counts["POST /v1/chat/completions"] >= min(EXAMPLES, 50) // 2  # it really ran
    assert_alive(url)


def test_schemathesis_with_an_api_key(keyed: str) -> None:
    """Briefly, through the key check: with the key as above, without it 401 for /v1/ and
    /api/."""
    auth = {"authorization": f"Bearer {KEY}"}
    with_key = fuzz(keyed, GenerationMode.POSITIVE, auth, examples=max(10, EXAMPLES // 10))
    assert with_key["POST /v1/chat/completions"] >= 5
    schema = schemathesis.openapi.from_url(f"{keyed}/openapi.json")
    for result in schema.get_all_operations():
        op = result.ok()

        @settings(
            max_examples=10,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(op.as_strategy(generation_mode=GenerationMode.POSITIVE))
        def run(case: schemathesis.Case) -> None:
            r = case.call(base_url=keyed, timeout=CALL_TIMEOUT)
            if case.path.startswith(("/v1/", "/api/")):
                assert r.status_code == 401, (case.as_curl_command(), r.status_code)
            check_answer(case, r)

        run()
    assert_alive(keyed, auth)


# ---------------------------------------------------------------- hand-written hostile bodies

M = {"messages": HI, "max_tokens": 8}
# Tool schemas a forced call must refuse (400 naming the tool), never hang or crash on.
HOSTILE_TOOL_SCHEMAS: dict[str, Any] = {
    "huge minLength": {"type": "string", "minLength": 10**9},
    "huge pattern repeat": {"type": "string", "pattern": "(ab){1,99999999}"},
    "empty enum": {"type": "object", "properties": {"x": {"enum": []}}, "required": ["x"]},
    "remote $ref": {"$ref": "https://example.com/schema.json"},
    "$ref loop to root": {"type": "object", "properties": {"x": {"$ref": "#"}}},
    "deep nesting": functools.reduce(lambda s, _: {"type": "array", "items": s}, range(200), {}),
    "not a schema": {"type": 3},
    "anyOf bomb": {"anyOf": [{"anyOf": [{"type": "string", "maxLength": 9999}] * 20}] * 20},
}


def _forced(schema: Any) -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "evil", "parameters": schema}}
    return {"tools": [tool], "tool_choice": "required"}


# (name, body, path, expected statuses; 200 where OpenAI accepts it)
HOSTILE: list[tuple[str, Any, str, tuple[int, ...]]] = [
    ("body is a list", [1, 2], "/v1/chat/completions", (400,)),
    ("body is a string", "hi", "/v1/chat/completions", (400,)),
    ("body is null", None, "/v1/chat/completions", (400,)),
    ("messages is a string", {"messages": "hi"}, "/v1/chat/completions", (400,)),
    ("messages is a dict", {"messages": {"role": "user"}}, "/v1/chat/completions", (400,)),
    ("message is a number", {"messages": [3]}, "/v1/chat/completions", (400,)),
    (
        "content is a number",
        {"messages": [{"role": "user", "content": 3}]},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "content parts are junk",
        {"messages": [{"role": "user", "content": [{"type": "x"}, {}]}], "max_tokens": 8},
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "content part text is a list",
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": [1]}]}],
            "max_tokens": 8,
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    ("role missing", {"messages": [{"content": "x"}]}, "/v1/chat/completions", (400,)),
    ("empty messages", {"messages": []}, "/v1/chat/completions", (400,)),
    # A budget over the context's room is cut to the room (as agents' 32k budgets are).
    ("max_tokens 1e12", {**M, "max_tokens": 10**12}, "/v1/chat/completions", (200,)),
    ("max_tokens 1e12 float", {**M, "max_tokens": 1e12}, "/v1/chat/completions", (400,)),
    ("max_tokens 2**64", {**M, "max_tokens": 2**64}, "/v1/chat/completions", (200,)),
    ("max_tokens negative", {**M, "max_tokens": -5}, "/v1/chat/completions", (400,)),
    ("max_tokens a string", {**M, "max_tokens": "many"}, "/v1/chat/completions", (400,)),
    (
        "max_completion_tokens 1e12",
        {**M, "max_completion_tokens": 10**12},
        "/v1/chat/completions",
        (200,),
    ),
    ("temperature -1", {**M, "temperature": -1}, "/v1/chat/completions", (400,)),
    ("temperature 1e308", {**M, "temperature": 1e308}, "/v1/chat/completions", (400,)),
    ("temperature a list", {**M, "temperature": [1]}, "/v1/chat/completions", (400,)),
    ("top_k 2**63", {**M, "top_k": 2**63}, "/v1/chat/completions", (200, 400)),
    ("top_k 2**31", {**M, "top_k": 2**31}, "/v1/chat/completions", (200, 400)),
    ("seed 2**64", {**M, "seed": 2**64}, "/v1/chat/completions", (200, 400)),
    ("seed -1", {**M, "seed": -1}, "/v1/chat/completions", (200, 400)),
    ("seed -2**63", {**M, "seed": -(2**63)}, "/v1/chat/completions", (200, 400)),
    ("n 1000", {**M, "n": 1000}, "/v1/chat/completions", (400,)),
    ("n 0", {**M, "n": 0}, "/v1/chat/completions", (400,)),
    ("thinking_budget 1e12", {**M, "thinking_budget": 10**12}, "/v1/chat/completions", (200, 400)),
    (
        "logit_bias huge id",
        {**M, "logit_bias": {"99999999999": 5}},
        "/v1/chat/completions",
        (200, 400),
    ),
    ("logit_bias negative id", {**M, "logit_bias": {"-1": 5}}, "/v1/chat/completions", (200, 400)),
    (
        "logit_bias id past the vocab",
        {**M, "logit_bias": {"200000": 5}},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "logit_bias id just past the vocab",
        {**M, "logit_bias": {"151936": 5}},
        "/v1/chat/completions",
        (400,),
    ),
    ("logit_bias last id", {**M, "logit_bias": {"151935": 5}}, "/v1/chat/completions", (200,)),
    (
        "completion logit_bias past the vocab",
        {"prompt": "Hi", "max_tokens": 4, "logit_bias": {"999999": -100}},
        "/v1/completions",
        (400,),
    ),
    (
        "logit_bias value huge",
        {**M, "logit_bias": {"100": 1e308}},
        "/v1/chat/completions",
        (200, 400),
    ),
    ("logit_bias not a dict", {**M, "logit_bias": [1]}, "/v1/chat/completions", (400,)),
    (
        "logit_bias unicode digits",
        {**M, "logit_bias": {"١٢": 1}},
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "stop of 1000 strings",
        {**M, "stop": [f"s{i}" for i in range(1000)]},
        "/v1/chat/completions",
        (200, 400),
    ),
    ("stop of empty strings", {**M, "stop": ["", ""]}, "/v1/chat/completions", (200, 400)),
    ("stop a number", {**M, "stop": 5}, "/v1/chat/completions", (400,)),
    (
        "roles out of order",
        {
            "messages": [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "t"},
                {"role": "system", "content": "s"},
            ],
            "max_tokens": 8,
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "only a system message",
        {"messages": [{"role": "system", "content": "s"}], "max_tokens": 8},
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "tool message without an id",
        {"messages": [{"role": "tool", "content": None}], "max_tokens": 8},
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "assistant tool_calls junk",
        {"messages": [{"role": "assistant", "tool_calls": [{"x": 1}]}, *HI], "max_tokens": 8},
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "assistant tool_calls args not JSON",
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": "{nope"}}
                    ],
                },
                *HI,
            ],
            "max_tokens": 8,
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "prompt over the context",
        {"messages": [{"role": "user", "content": "word " * 2000}]},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "response_format junk type",
        {**M, "response_format": {"type": "xml"}},
        "/v1/chat/completions",
        (400,),
    ),
    ("response_format a string", {**M, "response_format": "json"}, "/v1/chat/completions", (400,)),
    (
        "json_schema without schema",
        {**M, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "json_schema schema a string",
        {**M, "response_format": {"type": "json_schema", "json_schema": {"schema": "x"}}},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "json_schema bad type",
        {
            **M,
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}},
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "json_schema bad ref",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"$ref": "#/nowhere"}},
            },
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "json_schema remote ref",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"$ref": "http://127.0.0.1:9/x"}},
            },
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "json_schema bad pattern",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "string", "pattern": "(["}},
            },
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "json_schema self ref",
        {**M, "response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "#"}}}},
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "json_schema min > max",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "array", "minItems": 5, "maxItems": 1}},
            },
        },
        "/v1/chat/completions",
        (200, 400),
    ),
    (
        "json_schema enum empty",
        {**M, "response_format": {"type": "json_schema", "json_schema": {"schema": {"enum": []}}}},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "json_schema nested empty anyOf",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"anyOf": []}},
                        "required": ["a"],
                    }
                },
            },
        },
        "/v1/chat/completions",
        (400,),
    ),
    (
        "json_schema huge minItems",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "array", "minItems": 10**9}},
            },
        },
        "/v1/chat/completions",
        (400,),
    ),
    (
        "json_schema huge pattern repeat",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "string", "pattern": "a{1000000000}"}},
            },
        },
        "/v1/chat/completions",
        (400,),
    ),
    (
        "json_schema huge minLength",
        {
            **M,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "string", "minLength": 10**9}},
            },
        },
        "/v1/chat/completions",
        (400,),
    ),
    *[
        (f"forced call, {name}", {**M, **_forced(schema)}, "/v1/chat/completions", (400,))
        for name, schema in HOSTILE_TOOL_SCHEMAS.items()
    ],
    (
        "forced call, unknown tool",
        {**M, **_forced({"type": "object"}), "tool_choice": {"type": "function", "function": {}}},
        "/v1/chat/completions",
        (400,),
    ),
    ("tools junk", {**M, "tools": [{"type": "function"}, 3]}, "/v1/chat/completions", (400,)),
    ("tools a dict", {**M, "tools": {"a": 1}}, "/v1/chat/completions", (400,)),
    (
        "tool_choice junk",
        {**M, "tools": [], "tool_choice": {"type": "function"}},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "chat_template_kwargs junk",
        {**M, "chat_template_kwargs": {"enable_thinking": "yes", "tools": 5}},
        "/v1/chat/completions",
        (200, 400),
    ),
    ("reasoning_effort a number", {**M, "reasoning_effort": 3}, "/v1/chat/completions", (400,)),
    ("stream a string", {**M, "stream": "yes please"}, "/v1/chat/completions", (400,)),
    ("stream 0", {**M, "stream": 0}, "/v1/chat/completions", (400,)),
    ("max_tokens a numeric string", {**M, "max_tokens": "8"}, "/v1/chat/completions", (400,)),
    (
        "stream_options junk",
        {**M, "stream": True, "stream_options": {"include_usage": "x"}},
        "/v1/chat/completions",
        (400,),
    ),
    (
        "unknown fields",
        {
            **M,
            "frobnicate": {"x": [1, 2]},
            "metadata": {"a": "b"},
            "store": True,
            "parallel_tool_calls": False,
            "service_tier": "auto",
        },
        "/v1/chat/completions",
        (200,),
    ),
    (
        "unknown message fields",
        {"messages": [{"role": "user", "content": "Hi", "weird": 1}], "max_tokens": 8},
        "/v1/chat/completions",
        (200,),
    ),
    ("NaN temperature", "NAN_TEMPERATURE", "/v1/chat/completions", (400,)),
    ("Infinity logit bias", "INF_BIAS", "/v1/chat/completions", (200, 400)),
    ("completion prompt a number", {"prompt": 5}, "/v1/completions", (400,)),
    ("completion prompt empty", {"prompt": ""}, "/v1/completions", (400,)),
    (
        "completion prompt token ids",
        {"prompt": [1, 2, 3], "max_tokens": 2},
        "/v1/completions",
        (200,),
    ),
    ("completion prompt id past the vocab", {"prompt": [1, 2**31]}, "/v1/completions", (400,)),
    ("completion prompt negative id", {"prompt": [-1]}, "/v1/completions", (400,)),
    ("completion prompt empty ids", {"prompt": []}, "/v1/completions", (400,)),
    ("completion prompt over the context", {"prompt": "word " * 2000}, "/v1/completions", (400,)),
    (
        "completion max_tokens 1e12",
        {"prompt": "Hi", "max_tokens": 10**12},
        "/v1/completions",
        (200,),
    ),
    ("completion n 1000", {"prompt": "Hi", "n": 1000}, "/v1/completions", (400,)),
    (
        "completion stop of 1000 strings",
        {"prompt": "Hi", "max_tokens": 4, "stop": ["x"] * 1000},
        "/v1/completions",
        (200, 400),
    ),
    (
        "completion unknown fields",
        {"prompt": "Hi", "max_tokens": 4, "echo": False, "best_of": 1, "suffix": None},
        "/v1/completions",
        (200,),
    ),
]
RAW = {
    "NAN_TEMPERATURE": b'{"messages": [{"role": "user", "content": "Hi"}], "temperature": NaN}',
    "INF_BIAS": b'{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, '
    b'"logit_bias": {"100": Infinity}}',
}


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_bodies(
    server: tuple[str, Any], case: tuple[str, Any, str, tuple[int, ...]]
) -> None:
    url, _ = server
    _, body, path, statuses = case
    if isinstance(body, str) and body in RAW:
        r = post_bytes(url, RAW[body], path)
    else:
        r = post(url, body, path)
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert_openai_error(r)
    else:
        assert r.json()["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    assert_alive(url)


def test_ten_megabyte_body(server: tuple[str, Any]) -> None:
    url, _ = server
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (10 * 2**20)}]}).encode()
    r = post_bytes(url, big)
    assert_openai_error(r, 413)
    assert_alive(url)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json(server: tuple[str, Any], depth: int) -> None:
    url, _ = server
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"messages": ' + b"[" * depth + b"]" * depth + b"}",
        b'{"a":' * depth + b"1" + b"}" * depth,
    ):
        r = post_bytes(url, body)
        assert_openai_error(r, 400)
    # nested inside a field the schema takes as free-form JSON
    deep = b'{"x":' * depth + b"1" + b"}" * depth
    body = (
        b'{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "tools": ['
        + deep
        + b"]}"
    )
    r = post_bytes(url, body)
    assert r.status_code in (200, 400), r.text[:300]
    if r.status_code == 400:
        assert_openai_error(r)
    assert_alive(url)


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        b'{"messages": [{"role": "user", "content": "\xc3"}]}',
        b"\xef\xbb\xbf" + json.dumps({"messages": HI, "max_tokens": 4}).encode(),
        # a lone surrogate
        b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 4}',
        b'{"messages": [{"role": "user", "content": "\\u0000"}], "max_tokens": 4}',
        b"\x00\x00\x00{",
        b"",
        b"{",
        b'{"messages": [}',
    ],
    ids=[
        "bad utf-8",
        "cut utf-8",
        "bom",
        "lone surrogate",
        "nul",
        "nul bytes",
        "empty",
        "open",
        "broken",
    ],
)
def test_broken_bodies(server: tuple[str, Any], body: bytes) -> None:
    url, _ = server
    r = post_bytes(url, body)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    if r.status_code == 400:
        assert_openai_error(r)
    assert_alive(url)


def test_wrong_methods_and_paths(server: tuple[str, Any]) -> None:
    url, _ = server
    for method, path, status in [
        ("GET", "/v1/chat/completions", 405),
        ("PUT", "/v1/completions", 405),
        ("DELETE", "/v1/models", 405),
        ("GET", "/v1/../../etc/passwd", 404),
        ("POST", "/v1/embeddings", 404),
        ("GET", "/v1/models/%00", 404),
    ]:
        r = httpx.request(method, f"{url}{path}", timeout=CALL_TIMEOUT)
        assert_openai_error(r, status)
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        r = httpx.post(
            f"{url}/v1/chat/completions",
            content=json.dumps(M).encode(),
            headers={"content-type": ctype},
            timeout=CALL_TIMEOUT,
        )
        assert r.status_code in (200, 400, 415), r.text[:300]
        if r.status_code >= 400:
            assert_openai_error(r)
    assert_alive(url)


# ---------------------------------------------------------------- raw sockets: chunked and slow


def _connect(url: str, timeout: float = 10.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def _read_response(sock: socket.socket, deadline: float) -> bytes:
    """Everything until the server closes or a whole (Content-Length) response has come."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lengths = [
                ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")
            ]
            if lengths and len(rest) >= int(lengths[0].split(b":")[1]):
                break
    return data


def _parse(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _request_head(url: str, path: str, extra: str = "") -> bytes:
    host = url.removeprefix("http://")
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_chunked_body_over_the_limit_is_refused(keyed: str) -> None:
    """No Content-Length: the limit must hold on the bytes as they arrive, not on a header."""
    head = _request_head(
        keyed,
        "/v1/chat/completions",
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n",
    )
    piece = b"x" * 8192
    sent = 0
    with _connect(keyed) as sock:
        sock.sendall(head + _chunk(b'{"messages": [{"role": "user", "content": "'))
        deadline = time.monotonic() + 30
        try:
            while sent < 16 * SMALL_LIMIT and time.monotonic() < deadline:  # bounded either way
                sock.sendall(_chunk(piece))
                sent += len(piece)
                if select.select([sock], [], [], 0.01)[0]:
                    break  # the answer is in: stop sending
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want
        raw = _read_response(sock, time.monotonic() + 10)
    assert raw, "no answer"
    status, body = _parse(raw)
    assert status == 413, raw[:300]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert sent <= 8 * SMALL_LIMIT  # refused on the way, not after all 16x the limit
    assert_alive(keyed, {"authorization": f"Bearer {KEY}"})


def test_chunked_body_under_the_limit_is_served(keyed: str) -> None:
    head = _request_head(
        keyed,
        "/v1/chat/completions",
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
    )
    body = json.dumps({"messages": HI, "max_tokens": 20}).encode()
    with _connect(keyed) as sock:
        sock.sendall(head)
        for i in range(0, len(body), 7):
            part = body[i : i + 7]
            sock.sendall(_chunk(part))
        sock.sendall(b"0\r\n\r\n")
        raw = _read_response(sock, time.monotonic() + 30)
    status, answer = _parse(raw)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Hello world"


def test_api_key_is_checked_before_the_body_is_read(keyed: str) -> None:
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": KEY},
        {"authorization": "Bearer " + KEY + "x"},
        {"authorization": "Basic " + KEY},
    ):
        r = httpx.post(
            f"{keyed}/v1/chat/completions", json=M, headers=headers, timeout=CALL_TIMEOUT
        )
        assert assert_openai_error(r, 401)["type"] == "authentication_error"
    r = httpx.get(
        f"{keyed}/v1/models",
        headers={"authorization": ("Bearer " + "é" * 10).encode()},
        timeout=CALL_TIMEOUT,
    )
    assert_openai_error(r, 401)
    assert_alive(keyed, {"authorization": f"Bearer {KEY}"})
    assert_alive(keyed, {"authorization": f"bearer {KEY}"})  # the scheme is case-insensitive


def test_slow_body_does_not_block_others(server: tuple[str, Any]) -> None:
    """A client trickling its body byte by byte: others are served meanwhile, and the slow
    one is answered (or cut off) in bounded time."""
    url, _ = server
    body = json.dumps({"messages": HI, "max_tokens": 20}).encode()
    head = _request_head(url, "/v1/chat/completions", f"Content-Length: {len(body)}\r\n")
    with _connect(url) as slow:
        slow.sendall(head)
        for i, byte in enumerate(body):
            slow.sendall(bytes([byte]))
            if i % 20 == 0:
                assert_alive(url)  # the server is not stuck on the slow client
            time.sleep(0.002)
        raw = _read_response(slow, time.monotonic() + 30)
    status, answer = _parse(raw)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Hello world"


def test_slow_headers_do_not_block_others(server: tuple[str, Any]) -> None:
    url, _ = server
    head = _request_head(url, "/health").replace(b"POST", b"GET")
    with _connect(url) as slow:
        for i, byte in enumerate(head):
            slow.sendall(bytes([byte]))
            if i % 25 == 0:
                assert_alive(url)
            time.sleep(0.002)
        raw = _read_response(slow, time.monotonic() + 10)
    assert raw.startswith(b"HTTP/1.1 200")


def test_stalled_body_is_cut_off(keyed: str) -> None:
    """A client that promises a body and stops sending gets an error in bounded time
    rather than holding its request open forever."""
    url = keyed
    body = json.dumps({"messages": HI}).encode()
    head = _request_head(
        url,
        "/v1/chat/completions",
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n",
    )
    with _connect(url) as slow:
        slow.sendall(head + body[:10])
        t0 = time.monotonic()
        raw = _read_response(slow, t0 + 60)
        waited = time.monotonic() - t0
    assert raw, "the server never answered nor closed"
    status, answer = _parse(raw)
    assert status == 408 and set(answer["error"]) == {"message", "type", "param", "code"}
    assert BODY_TIMEOUT <= waited < BODY_TIMEOUT + 10
    assert_alive(url, {"authorization": f"Bearer {KEY}"})
