"""POST /v1/responses, GET and DELETE /v1/responses/{id}: OpenAI's Responses API over the
same engine stream as chat completions. One generation's events are streamed as named
events or folded into one response object; what a request means is request.py's, what
the answer looks like answer.py's. Responses are kept (unless `store: false`) in
a ResponseStore for `previous_response_id` and GET.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.chat.template import ChatTemplate
from edge.engine import Finish, TokenEvent
from edge.errors import NotFoundError
from edge.server import sse
from edge.server.errors import OPENAPI_ERRORS, error_response
from edge.server.responses.answer import OutputWriter
from edge.server.responses.request import ResponsesSpec, build_spec
from edge.server.responses.schema import ResponsesRequest
from edge.server.responses.store import ResponseStore, partition_of
from edge.server.runtime import Runtime
from edge.server.worker import EngineWorker, Stream
from edge.server.worker import fold as fold_events

log = logging.getLogger("edge.server")

Keep = Callable[[dict[str, Any]], object]
"""What to do with a finished response object (store it, or not)."""


def install(app: FastAPI, rt: Runtime, *, keyed: bool) -> None:
    """The routes and their store (`app.state.responses`); `keyed`: the server requires an
    API key, so stored responses are partitioned by it."""
    store = app.state.responses = ResponseStore()

    def partition(request: Request) -> str:
        return partition_of(request.headers.get("authorization"), keyed)

    @app.post("/v1/responses", response_model=None, responses=OPENAPI_ERRORS)
    async def create_response(req: ResponsesRequest, request: Request, response: Response) -> Any:
        keep_s = req.keep_alive_s()  # a bad value is a 400 before any load
        worker, template = await rt.awake()
        rt.keep_alive(keep_s)
        part = partition(request)
        previous = None
        if req.previous_response_id is not None:
            previous = stored(store, part, req.previous_response_id, "previous_response_id").items
        # Off the event loop, as in chat completions: rendering and tokenizing take a while.
        spec, prompt = await run_in_threadpool(prepare, req, previous, worker, template)
        events = worker.start(spec.job(prompt))  # a refusal raises here, with its status

        def keep(response: dict[str, Any]) -> None:
            if spec.store:
                store.put(part, response, [*spec.items, *response["output"]])

        headers = left_out(spec)
        if req.stream:
            return EventSourceResponse(stream(spec, rt.model_id, events, keep), headers=headers)
        response.headers.update(headers)
        return await fold(spec, rt.model_id, events, keep)

    @app.get("/v1/responses/{response_id}", response_model=None, responses=OPENAPI_ERRORS)
    async def get_response(response_id: str, request: Request) -> Any:
        return stored(store, partition(request), response_id).response

    @app.delete("/v1/responses/{response_id}", response_model=None, responses=OPENAPI_ERRORS)
    async def delete_response(response_id: str, request: Request) -> Any:
        if not store.delete(partition(request), response_id):
            raise not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}


LEFT_OUT = "Edge-Qwen-Tools-Left-Out"
"""The header that names the built-in tools a request offered and the model was not shown."""


def left_out(spec: ResponsesSpec) -> dict[str, str]:
    """The header saying which built-in tools were left out (and a log line), if any."""
    if not spec.left_out:
        return {}
    names = ", ".join(dict.fromkeys(spec.left_out))
    log.warning("Responses: left out the built-in tools this server cannot run: %s", names)
    return {LEFT_OUT: names}


def stored(store: ResponseStore, partition: str, response_id: str, param: str | None = None) -> Any:
    """The stored response, or 404 (naming the field that named it, if any)."""
    entry = store.get(partition, response_id)
    if entry is None:
        raise not_found(response_id, param)
    return entry


def not_found(response_id: str, param: str | None = None) -> NotFoundError:
    """A 404 (errors.py's table), as OpenAI answers for an unknown or expired response."""
    error = NotFoundError(f"Response with id '{response_id[:100]}' not found.")
    error.param = param
    return error


def prepare(
    req: ResponsesRequest,
    previous: list[dict[str, Any]] | None,
    worker: EngineWorker,
    template: ChatTemplate,
) -> tuple[ResponsesSpec, list[int]]:
    """The spec and its prompt's tokens."""
    spec = build_spec(req, template, previous)
    return spec, worker.engine.tokenize(spec.prompt_text)


def _frame(events: list[dict[str, Any]]) -> bytes:
    return b"".join(sse.event(e["type"], e) for e in events)


def stream(spec: ResponsesSpec, model: str, events: Stream, keep: Keep) -> AsyncIterator[bytes]:
    """Named events: created, in_progress, each item's, then completed (or incomplete);
    an error once the status line is gone ends it with `response.failed`."""
    writer = OutputWriter(spec, model)

    def on_token(event: TokenEvent) -> bytes:
        return _frame(writer.token(event)) if event.text or event.logprobs else b""

    def on_finish(finish: Finish) -> bytes:
        out = writer.finish(finish)
        keep(writer.response)
        return _frame(out)

    def on_error(exc: Exception) -> bytes:
        answer = error_response(exc)
        message = json.loads(bytes(answer.body))["error"]["message"]
        code = "rate_limit_exceeded" if answer.status_code == 429 else "server_error"
        return _frame(writer.failed(message, code))

    return sse.relay(events, on_token, on_finish, on_error, head=_frame(writer.start()))


async def fold(spec: ResponsesSpec, model: str, events: Stream, keep: Keep) -> dict[str, Any]:
    """The non-streaming answer: the same writer over the same stream, its last response."""
    writer = OutputWriter(spec, model)
    finish = await fold_events(events, writer.token)
    writer.finish(finish)
    keep(writer.response)
    return writer.response
