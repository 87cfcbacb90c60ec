"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, so the
`anthropic` SDKs and Claude Code work unchanged but for the base URL. The routes, and one
generation's events streamed as named SSE events or folded into one message; what a
request means is request.py's, what a block holds answer.py's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.chat.template import ChatTemplate
from edge.engine import Finish, TokenEvent, Usage
from edge.server import sse
from edge.server.anthropic import answer, request
from edge.server.anthropic.answer import BlockWriter
from edge.server.anthropic.request import MessagesSpec
from edge.server.anthropic.schema import CountTokensRequest, MessagesRequest
from edge.server.errors import ANTHROPIC_ERRORS, error_json
from edge.server.runtime import Runtime
from edge.server.worker import EngineWorker, Stream
from edge.server.worker import fold as fold_events

PATH = "/v1/messages"
PING = sse.event("ping", {"type": "ping"})  # Anthropic's keep-alive while the prompt is read


def install(app: FastAPI, rt: Runtime) -> None:
    """The two routes."""

    @app.post(PATH, response_model=None, responses=ANTHROPIC_ERRORS)
    async def messages(req: MessagesRequest) -> Any:
        keep_s = req.keep_alive_s()  # a bad value is a 400 before any load
        worker, template = await rt.awake()
        rt.keep_alive(keep_s)
        # Off the event loop, as for chat completions: rendering a long history takes a while.
        spec, prompt = await run_in_threadpool(prepare, req, worker, template)
        events = worker.start(spec.job(prompt))  # a refusal raises here, with its status
        if req.stream:
            return EventSourceResponse(stream(spec, rt.model_id, len(prompt), events))
        return await fold(spec, rt.model_id, events)

    @app.post(f"{PATH}/count_tokens", responses=ANTHROPIC_ERRORS)
    async def count_tokens(req: CountTokensRequest) -> dict[str, int]:
        worker, template = await rt.awake()
        return {"input_tokens": await run_in_threadpool(count, req, worker, template)}


def prepare(
    req: MessagesRequest, worker: EngineWorker, template: ChatTemplate
) -> tuple[MessagesSpec, list[int]]:
    """The spec and its prompt's tokens."""
    spec = request.build_spec(req, template)
    prompt = worker.engine.tokenize(spec.prompt_text)
    request.fit_context(spec, len(prompt), worker.limits.n_ctx)
    return spec, prompt


def count(req: CountTokensRequest, worker: EngineWorker, template: ChatTemplate) -> int:
    """The tokens of the prompt the request renders to."""
    return len(worker.engine.tokenize(request.prompt_of(req, template).text))


def _events(payloads: list[dict[str, Any]]) -> bytes:
    return b"".join(map(event_bytes, payloads))


_quote = json.encoder.encode_basestring  # a str as a JSON string, the way sse.dumps writes it
_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking"}


def event_bytes(payload: dict[str, Any]) -> bytes:
    """One event as SSE bytes: `sse.event(payload["type"], payload)`, byte for byte. A text
    or thinking delta, the per-token event, is written from a template instead of through
    json.dumps, which would cost as much again as splitting the text."""
    if payload["type"] == "content_block_delta":
        delta = payload["delta"]
        name = _DELTA_FIELDS.get(delta["type"])
        if name is not None and len(delta) == 2:
            head = f'{payload["index"]},"delta":{{"type":"{delta["type"]}","{name}":'
            return _DELTA + head.encode() + _quote(delta[name]).encode() + b"}}" + sse.END
    return sse.event(payload["type"], payload)


def stream(
    spec: MessagesSpec, model: str, prompt_tokens: int, events: Stream
) -> AsyncIterator[bytes]:
    """Named events: message_start, each block's start/deltas/stop, message_delta with the
    stop reason and usage, message_stop; pings while the prompt is read; an error after
    the status line as an `error` event."""
    writer = BlockWriter(spec)

    def on_token(event: TokenEvent) -> bytes:
        return _events(writer.text(event.text)) if event.text else b""

    def on_finish(finish: Finish) -> bytes:
        reason, sequence = answer.stop_of(writer, finish)
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": answer.usage(finish.usage),
        }
        return _events([*writer.finish(finish.reason), end, {"type": "message_stop"}])

    def on_error(exc: Exception) -> bytes:
        return sse.event("error", error_json(exc, PATH)[1])

    head = answer.message(spec, model, [], Usage(prompt_tokens, 0, 0, 0))
    start = {"type": "message_start", "message": head}
    return sse.relay(events, on_token, on_finish, on_error, head=_events([start]), keepalive=PING)


async def fold(spec: MessagesSpec, model: str, events: Stream) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    writer = BlockWriter(spec)
    finish = await fold_events(events, lambda e: writer.text(e.text) if e.text else None)
    writer.finish(finish.reason)
    stop = answer.stop_of(writer, finish)
    return answer.message(spec, model, writer.content, finish.usage, stop)
