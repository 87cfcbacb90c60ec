"""POST /v1/chat/completions: the route, and one generation's events streamed as chunks or
folded into one answer. What a request means is request.py's, what a delta holds answer.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.chat.template import ChatTemplate
from edge.engine import Finish, TokenEvent
from edge.server import logprobs, sse
from edge.server.chat_completions import answer, request
from edge.server.chat_completions.request import ChatSpec
from edge.server.chat_completions.schema import ChatCompletionRequest
from edge.server.errors import OPENAPI_ERRORS
from edge.server.runtime import Runtime
from edge.server.usage import usage
from edge.server.worker import EngineWorker, Stream
from edge.server.worker import fold as fold_events


def install(app: FastAPI, rt: Runtime, *, reasoning_format: str) -> None:
    """The route; `reasoning_format` is the default for requests that name none."""

    @app.post("/v1/chat/completions", response_model=None, responses=OPENAPI_ERRORS)
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        keep_s = req.keep_alive_s()  # a bad value is a 400 before any load
        worker, template = await rt.awake()
        rt.keep_alive(keep_s)
        # Off the event loop: a long prompt or a big schema takes a while to render and
        # tokenize, and every other client would wait for it meanwhile.
        spec, prompt = await run_in_threadpool(prepare, req, worker, template, reasoning_format)
        events = worker.start(spec.job(prompt))  # a refusal raises here, with its status
        if req.stream:
            return EventSourceResponse(stream(spec, rt.model_id, events))
        return await fold(spec, rt.model_id, events)


def prepare(
    req: ChatCompletionRequest, worker: EngineWorker, template: ChatTemplate, default_format: str
) -> tuple[ChatSpec, list[int]]:
    """The spec and its prompt's tokens."""
    spec = request.build_spec(
        req, template, default_format=default_format, n_vocab=worker.limits.n_vocab
    )
    return spec, worker.engine.tokenize(spec.prompt_text)


def stream(spec: ChatSpec, model: str, events: Stream) -> AsyncIterator[bytes]:
    """Chat chunks: role, deltas, one finish chunk with timings, the optional usage chunk.
    With logprobs, each token's entry rides on the next chunk written (a token's text may
    be held back a while, e.g. inside a tool call), the rest on the finish chunk."""
    writer = answer.ChunkWriter(spec, model)
    delta_bytes = answer.ChunkBytes(spec, model)
    pending: list[dict[str, Any]] = []

    def on_token(event: TokenEvent) -> bytes:
        deltas = writer.text(event.text) if event.text else []
        if event.logprobs:
            pending.extend(map(logprobs.chat_entry, event.logprobs))
        if not pending:
            return b"".join(map(delta_bytes.delta, deltas))
        return b"".join(map(sse.data, with_logprobs([chunk(d) for d in deltas])))

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return answer.chunk(spec, model, delta, reason)

    def with_logprobs(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if chunks and pending:
            chunks[0]["choices"][0]["logprobs"] = logprobs.chat_logprobs(pending[:])
            pending.clear()
        return chunks

    def on_finish(event: Finish) -> list[dict[str, Any]]:
        out = [chunk(d) for d in writer.finish(event.reason)]
        final = chunk({}, writer.finish_reason(event.reason))
        out.append({**final, "timings": answer.timings(event)})
        with_logprobs(out)
        if spec.include_usage:
            out.append({**final, "choices": [], "usage": usage(event)})
        return out

    role = answer.chunk(spec, model, {"role": "assistant", "content": ""})
    return sse.frame(events, on_token, on_finish, head=(role,))


async def fold(spec: ChatSpec, model: str, events: Stream) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    writer = answer.ChunkWriter(spec, model)
    entries: list[dict[str, Any]] = []

    def on_token(event: TokenEvent) -> None:
        if event.text:
            writer.text(event.text)
        entries.extend(map(logprobs.chat_entry, event.logprobs))

    finish = await fold_events(events, on_token)
    writer.finish(finish.reason)
    message: dict[str, Any] = {"role": "assistant", "content": writer.content}
    if spec.return_reasoning and spec.reasoning_format == "separate" and writer.reasoning:
        message["reasoning_content"] = message["reasoning"] = writer.reasoning
    if writer.tool_calls:
        message["tool_calls"] = writer.tool_calls
        message["content"] = writer.content or None
    choice = {
        "index": 0,
        "message": message,
        "logprobs": logprobs.chat_logprobs(entries) if spec.params.logprobs is not None else None,
        "finish_reason": writer.finish_reason(finish.reason),
    }
    return {
        "id": spec.id,
        "object": "chat.completion",
        "created": spec.created,
        "model": model,
        "choices": [choice],
        "usage": usage(finish),
        "timings": answer.timings(finish),
    }
