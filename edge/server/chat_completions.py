"""POST /v1/chat/completions: the route, and one generation's events streamed as chunks or
folded into one answer. What a request means and what a delta holds is chat_api's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.chat.template import ChatTemplate
from edge.engine import Finish, Job, TokenEvent
from edge.server import chat_api, sse
from edge.server.chat_api import ChatJob
from edge.server.errors import OPENAPI_ERRORS
from edge.server.runtime import Runtime
from edge.server.schema import ChatCompletionRequest
from edge.server.worker import EngineWorker, Stream
from edge.server.worker import fold as fold_events


def install(app: FastAPI, rt: Runtime, *, reasoning_format: str) -> None:
    """The route; `reasoning_format` is the default for requests that name none."""

    @app.post("/v1/chat/completions", response_model=None, responses=OPENAPI_ERRORS)
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        worker, template = rt.ready()
        # Off the event loop: a long prompt or a big schema takes a while to render and
        # tokenize, and every other client would wait for it meanwhile.
        job, prompt = await run_in_threadpool(prepare, req, worker, template, reasoning_format)
        work = Job(prompt, job.params, job.control)
        # Checked before answering, so refusals get a status; the response then starts at
        # once, so a client that leaves during a long prompt is noticed and its work stopped.
        worker.admit(work)
        events = worker.stream(work)
        if req.stream:
            return EventSourceResponse(stream(job, rt.model_id, events))
        return await fold(job, rt.model_id, events)


def prepare(
    req: ChatCompletionRequest, worker: EngineWorker, template: ChatTemplate, default_format: str
) -> tuple[ChatJob, list[int]]:
    """The job and its prompt's tokens."""
    job = chat_api.build_job(
        req, template, default_format=default_format, n_vocab=worker.limits.n_vocab
    )
    return job, worker.engine.tokenize(job.prompt_text)


def stream(job: ChatJob, model: str, events: Stream) -> AsyncIterator[bytes]:
    """Chat chunks: role, deltas, one finish chunk with timings, the optional usage chunk."""
    writer = chat_api.ChunkWriter(job, model)
    delta_bytes = chat_api.ChunkBytes(job, model)

    def on_token(event: TokenEvent) -> bytes:
        return b"".join(map(delta_bytes.delta, writer.text(event.text))) if event.text else b""

    def on_finish(event: Finish) -> list[dict[str, Any]]:
        out = [chat_api.chunk(job, model, d) for d in writer.finish(event.reason)]
        final = chat_api.chunk(job, model, {}, writer.finish_reason(event.reason))
        out.append({**final, "timings": chat_api.timings(event)})
        if job.include_usage:
            out.append({**final, "choices": [], "usage": chat_api.usage(event)})
        return out

    role = chat_api.chunk(job, model, {"role": "assistant", "content": ""})
    return sse.frame(events, on_token, on_finish, head=(role,))


async def fold(job: ChatJob, model: str, events: Stream) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    writer = chat_api.ChunkWriter(job, model)
    finish = await fold_events(events, lambda e: writer.text(e.text) if e.text else None)
    writer.finish(finish.reason)
    message: dict[str, Any] = {"role": "assistant", "content": writer.content}
    if job.return_reasoning and job.reasoning_format == "separate" and writer.reasoning:
        message["reasoning_content"] = message["reasoning"] = writer.reasoning
    if writer.tool_calls:
        message["tool_calls"] = writer.tool_calls
        message["content"] = writer.content or None
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": writer.finish_reason(finish.reason),
    }
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": job.created,
        "model": model,
        "choices": [choice],
        "usage": chat_api.usage(finish),
        "timings": chat_api.timings(finish),
    }
