"""The error table over HTTP, fast (fake engine, no uvicorn): every row of
edge/server/errors.py, as a status line and in-band in a stream, and the other error
answers (invalid bodies, unknown paths, a model that is loading or failed to load)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import httpx
import pytest

import edge.errors
from edge.errors import ContextOverflowError, EdgeError, ParamError
from edge.server.errors import TABLE, error_response, row_of
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, qwen_template, run, sse

# Every row's class, and ParamError: a UsageError whose `param` must reach the client.
CASES = [pytest.param(row.cls, id=row.cls.__name__) for row in TABLE]
CASES.append(pytest.param(ParamError, id="ParamError"))


def example(cls: type[EdgeError]) -> EdgeError:
    """An instance of any error class: a message and a hint, or a param and a message."""
    if issubclass(cls, ParamError):
        return cls("temperature", "Too hot.")
    return cls("It went wrong.", "Do this instead.")


def expected_error(cls: type[EdgeError]) -> dict[str, Any]:
    """The error object for `example(cls)`, spelled out by hand from the table's row."""
    row = next(row for row in TABLE if issubclass(cls, row.cls))
    if issubclass(cls, ParamError):
        return {"message": "Too hot.", "type": row.error_type, "param": "temperature", "code": None}
    return {
        "message": "It went wrong. Do this instead.",
        "type": row.error_type,
        "param": None,
        "code": row.code,
    }


def answer(exc: EdgeError, stream: bool) -> httpx.Response:
    """The answer to a chat request whose generation fails with `exc`."""
    engine = FakeEngine()
    engine.enqueue_error(exc)

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            body = {"messages": HI, "stream": stream}
            return await client.post("/v1/chat/completions", json=body)

    return run(go)


@pytest.mark.parametrize("cls", CASES)
def test_each_row_is_a_status_with_openai_error_json(cls: type[EdgeError]) -> None:
    row = row_of(example(cls))
    r = answer(example(cls), stream=False)
    assert r.status_code == row.status
    assert r.json() == {"error": expected_error(cls)}
    assert r.headers.get("retry-after") == row.retry_after
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("cls", CASES)
def test_each_row_is_sent_in_band_once_a_stream_has_begun(cls: type[EdgeError]) -> None:
    r = answer(example(cls), stream=True)
    assert r.status_code == 200  # the status line went out with the role chunk
    assert "retry-after" not in r.headers
    events = sse(r.text)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[1:] == [{"error": expected_error(cls)}, "[DONE]"]


def test_the_table_statuses_are_the_documented_ones() -> None:
    # A row's status is part of the API: changing one must be a decision, not a slip.
    rows = {row.cls.__name__: (row.status, row.error_type, row.anthropic_type) for row in TABLE}
    assert rows == {
        "ContextOverflowError": (400, "invalid_request_error", "invalid_request_error"),
        "UsageError": (400, "invalid_request_error", "invalid_request_error"),
        "AuthError": (401, "authentication_error", "authentication_error"),
        "NotFoundError": (404, "invalid_request_error", "not_found_error"),
        "BodyTooLargeError": (413, "invalid_request_error", "request_too_large"),
        "QueueFullError": (429, "rate_limit_error", "rate_limit_error"),
        "LoadingError": (503, "server_error", "overloaded_error"),
        "ContextFullError": (503, "server_error", "overloaded_error"),
        "EngineClosedError": (503, "server_error", "overloaded_error"),
        "EdgeError": (500, "server_error", "api_error"),
    }
    codes = {row.cls.__name__: row.code for row in TABLE if row.code}
    assert codes == {"ContextOverflowError": "context_length_exceeded"}
    assert {row.status for row in TABLE if row.retry_after} == {429, 503}
    assert all(row.retry_after for row in TABLE if row.status in (429, 503))


def test_no_row_is_hidden_behind_an_earlier_one() -> None:
    # First match wins, so a subclass listed after its base would never be reached.
    for i, earlier in enumerate(TABLE):
        for later in TABLE[i + 1 :]:
            assert not issubclass(later.cls, earlier.cls), (later.cls, earlier.cls)
    assert TABLE[-1].cls is EdgeError  # the catch-all comes last


def edge_error_classes() -> list[type[EdgeError]]:
    return [
        cls
        for _, cls in inspect.getmembers(edge.errors, inspect.isclass)
        if issubclass(cls, EdgeError)
    ]


@pytest.mark.parametrize("cls", edge_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_gets_the_row_of_its_nearest_listed_ancestor(
    cls: type[EdgeError],
) -> None:
    listed = {row.cls: row for row in TABLE}
    nearest = next(listed[base] for base in cls.__mro__ if base in listed)
    assert row_of(example(cls)) is nearest


def test_a_param_error_names_its_param_and_others_name_none() -> None:
    engine = FakeEngine()

    async def go() -> list[dict[str, Any]]:
        async with client_of(engine) as (client, _):
            bodies = [
                ("/v1/chat/completions", {"messages": HI, "n": 2}),
                ("/v1/chat/completions", {"messages": HI, "logit_bias": {"999999": 1}}),
                ("/v1/completions", {"prompt": "x", "logit_bias": {"a": 1}}),
                ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 5000}]}),
            ]
            answers = [await client.post(path, json=body) for path, body in bodies]
            assert {r.status_code for r in answers} == {400}
            return [r.json()["error"] for r in answers]

    n, vocab, key, overflow = run(go)
    assert (n["param"], n["code"], n["type"]) == ("n", None, "invalid_request_error")
    assert vocab["param"] == "logit_bias" and "151935" in vocab["message"]
    assert key["param"] == "logit_bias" and "'a' is not one" in key["message"]
    assert (overflow["param"], overflow["code"]) == (None, "context_length_exceeded")
    assert engine.jobs == []  # refused before anything reached the engine


BUDGETS = [
    ("/v1/chat/completions", {"messages": HI, "max_tokens": 32768}),
    ("/v1/chat/completions", {"messages": HI, "max_completion_tokens": 32000}),
    ("/v1/completions", {"prompt": "Once", "max_tokens": 32768}),
    ("/v1/responses", {"input": "Hi", "max_output_tokens": 32768}),
    ("/v1/messages", {"messages": HI, "max_tokens": 32000}),
]


@pytest.mark.parametrize(("path", "body"), BUDGETS, ids=lambda v: str(v)[:40])
def test_a_budget_over_the_room_is_cut_to_the_room(path: str, body: dict[str, Any]) -> None:
    # Agents send their model's largest output (32k) whatever the context: every API cuts
    # it to what the context leaves after the prompt, as llama-server does, and answers.
    engine = FakeEngine(n_ctx=4096)

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post(path, json=body)

    r = run(go)
    assert r.status_code == 200, r.text
    job = engine.jobs[-1]
    assert job.params.max_tokens == 4096 - len(job.prompt)


def test_the_overflow_advice_can_be_followed() -> None:
    # A prompt that does not fit by itself is still a 400; its hint says what can be done.
    from edge.engine import Engine

    class Stub:
        check_prompt = Engine.check_prompt
        _overflow_hint = Engine._overflow_hint

        def __init__(self, n_ctx: int) -> None:
            self.plan = type("P", (), {"n_ctx": n_ctx})()
            self.info = type("I", (), {"ctx_train": 40960})()

    with pytest.raises(ContextOverflowError) as small:
        Stub(4096).check_prompt(list(range(5000)))
    assert small.value.hint.endswith("or use a larger --ctx (up to 40960).")
    with pytest.raises(ContextOverflowError) as full:
        Stub(40960).check_prompt(list(range(41000)))
    assert "--ctx" not in full.value.hint and "40960 tokens is the most" in full.value.hint


def test_an_invalid_body_is_a_400_naming_the_field() -> None:
    engine = FakeEngine()

    async def go() -> list[httpx.Response]:
        async with client_of(engine) as (client, _):
            path = "/v1/chat/completions"
            return [
                await client.post(path, json={"messages": HI, "temperature": "hot"}),
                await client.post(path, json={"messages": [{"role": "x", "content": "a"}]}),
                await client.post(path, json={}),
                await client.post(path, content=b'{"messages": [', headers=JSON),
            ]

    temperature, role, missing, broken = run(go)
    assert temperature.status_code == 400
    assert temperature.json() == {
        "error": {
            "message": "Invalid value for 'temperature': Input should be a valid number.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        }
    }
    assert role.status_code == 400 and role.json()["error"]["param"] == "messages.0.role"
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    assert missing.json()["error"]["message"] == "Invalid value for 'messages': Field required."
    assert broken.status_code == 400
    error = broken.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] is None  # not a field
    assert error["message"].startswith("Invalid JSON body (at byte ")


JSON = {"content-type": "application/json"}


def test_unknown_paths_and_methods_get_openai_error_json() -> None:
    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client_of(FakeEngine()) as (client, _):
            return await client.get("/v1/nope"), await client.get("/v1/chat/completions")

    missing, method = run(go)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"message": "Not Found", "type": "not_found_error", "param": None, "code": None}
    }
    assert method.status_code == 405 and method.headers["allow"] == "POST"
    assert method.json()["error"]["type"] == "invalid_request_error"


def test_an_unexpected_exception_is_a_bare_500() -> None:
    r = error_response(RuntimeError("secret detail"))
    assert r.status_code == 500 and "retry-after" not in r.headers
    assert b"secret detail" not in bytes(r.body)
    assert bytes(r.body) == (
        b'{"error":{"message":"Internal server error.","type":"server_error",'
        b'"param":null,"code":null}}'
    )


def test_requests_get_503_while_the_model_loads_then_are_answered() -> None:
    engine = FakeEngine()
    loaded = threading.Event()

    def load() -> Any:
        loaded.wait(10)
        return engine, qwen_template()

    async def go() -> list[httpx.Response]:
        async with client_of(engine, load=load, ready=False) as (client, _):
            early = [
                await client.get("/health"),
                await client.post("/v1/chat/completions", json={"messages": HI}),
                await client.post("/v1/completions", json={"prompt": "x"}),
            ]
            loaded.set()
            for _ in range(500):
                if (await client.get("/health")).status_code == 200:
                    break
            return [*early, await client.post("/v1/chat/completions", json={"messages": HI})]

    health, chat, text, later = run(go)
    assert health.status_code == 503
    assert health.json() == {"status": "loading", "detail": None}
    for r in (chat, text):
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["error"]["message"] == "The model is still loading. Retry in a few seconds."
    assert later.status_code == 200


def test_a_model_that_failed_to_load_says_why_everywhere() -> None:
    def load() -> Any:
        raise OSError("no such file")

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client_of(FakeEngine(), load=load, ready=False) as (client, _):
            for _ in range(500):
                health = await client.get("/health")
                if health.json()["status"] == "error":
                    break
                await asyncio.sleep(0.01)  # the load fails on its thread, then on the loop
            return health, await client.post("/v1/chat/completions", json={"messages": HI})

    health, chat = run(go)
    reason = "The model failed to load: no such file"
    assert health.status_code == 503 and health.json() == {"status": "error", "detail": reason}
    assert chat.status_code == 503 and chat.json()["error"]["message"].startswith(reason)
    assert chat.headers["retry-after"] == "2"


# Each API's body with thinking on and no budget of its own.
THINKING_ON = {
    "/v1/chat/completions": {"messages": HI},
    "/v1/messages": {"messages": HI, "max_tokens": 8, "thinking": {"type": "adaptive"}},
    "/v1/responses": {"input": "Hi"},
}


@pytest.mark.parametrize("path", list(THINKING_ON))
@pytest.mark.parametrize(
    ("fields", "status", "budget"),
    [
        ({"thinking_budget": 7}, 200, 7),
        ({"thinking_token_budget": 7}, 200, 7),  # vLLM's name
        ({"reasoning_budget": 7}, 200, 7),  # llama.cpp's name
        ({"thinking_token_budget": 7, "reasoning_budget": 7}, 200, 7),  # agreeing is fine
        ({"thinking_token_budget": 7, "reasoning_budget": 8}, 400, None),
        ({"reasoning_budget": -1}, 400, None),
    ],
)
def test_every_budget_spelling_reaches_the_one_budget(
    path: str, fields: dict[str, int], status: int, budget: int | None
) -> None:
    engine = FakeEngine()

    async def body() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post(path, json={**THINKING_ON[path], **fields})

    r = run(body)
    assert r.status_code == status, r.text
    if status == 200:
        assert engine.jobs[-1].thinking.budget == budget
    elif path == "/v1/messages":
        assert r.json()["error"]["type"] == "invalid_request_error"
    else:
        assert r.json()["error"]["param"] in fields


@pytest.mark.parametrize(
    ("thinking", "fields", "status", "budget"),
    [
        ({"type": "enabled", "budget_tokens": 9}, {}, 200, 9),
        ({"type": "enabled", "budget_tokens": 9}, {"thinking_token_budget": 9}, 200, 9),
        ({"type": "enabled", "budget_tokens": 9}, {"reasoning_budget": 5}, 400, None),
    ],
)
def test_anthropics_budget_tokens_meets_the_other_spellings(
    thinking: dict[str, Any], fields: dict[str, int], status: int, budget: int | None
) -> None:
    engine = FakeEngine()
    body = {"messages": HI, "max_tokens": 8, "thinking": thinking, **fields}

    async def send() -> httpx.Response:
        async with client_of(engine) as (client, _):
            return await client.post("/v1/messages", json=body)

    r = run(send)
    assert r.status_code == status, r.text
    if budget is not None:
        assert engine.jobs[-1].thinking.budget == budget


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),  # without logprobs
        ("/v1/chat/completions", {"logprobs": 3}, "logprobs"),  # chat's is a bool
        ("/v1/completions", {"logprobs": True}, "logprobs"),  # completions' is a count
        ("/v1/completions", {"logprobs": -1}, "logprobs"),
        ("/v1/completions", {"prompt": [[1], [2]]}, "prompt"),  # one prompt per request
    ],
)
def test_logprobs_fields_are_checked(path: str, fields: dict[str, Any], param: str) -> None:
    body = {"messages": HI} if "chat" in path else {"prompt": "Hi"}

    async def send() -> httpx.Response:
        async with client_of(FakeEngine()) as (client, _):
            return await client.post(path, json={**body, **fields})

    r = run(send)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
