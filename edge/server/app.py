"""`create_app(settings, ...)`: the OpenAI-compatible HTTP API, with no module-level state.

Errors are translated once, by class, into OpenAI's `{"error": {...}}` shape; routes
only raise. The engine is loaded in the background so /health answers 503 until ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from edge.chat.template import ChatTemplate
from edge.engine import EngineAPI, Finish, Job, TokenEvent
from edge.errors import ParamError
from edge.server import chat_api
from edge.server.errors import OPENAPI_ERRORS, error_response, install_error_handlers
from edge.server.guard import install_guard
from edge.server.metrics import Metrics
from edge.server.runtime import Runtime
from edge.server.schema import ChatCompletionRequest, CompletionRequest
from edge.server.worker import EngineWorker, Keepalive

log = logging.getLogger("edge.server")
# The page's own inline script and style only; nothing from elsewhere, no plugins, no framing.
_CSP = (
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'none'; object-src 'none'; frame-ancestors 'none'"
)


@dataclass
class ServerOptions:
    """What `edge-qwen serve` configures."""

    api_key: str | None = None
    max_queue: int = 16
    max_body_bytes: int = 8 * 2**20
    body_timeout_s: float = 60.0  # the whole body must arrive within this (slow clients)
    reasoning_format: str = "separate"
    cors_origins: tuple[str, ...] = ()


def create_app(
    model_id: str,
    load: Callable[[], tuple[EngineAPI, ChatTemplate]],
    options: ServerOptions | None = None,
    on_failed: Callable[[str], None] | None = None,
) -> FastAPI:
    """The API around a model that `load()` opens (in the background, at startup).

    When loading fails, /health and every request say why, and `on_failed(reason)` runs:
    the CLI uses it to stop the server rather than leave it up without a model.
    """
    opts = options or ServerOptions()
    rt = Runtime(model_id)
    metrics = Metrics()

    def fail(reason: str) -> None:  # shown by /health and every request from now on
        rt.failed = reason
        if on_failed is not None:
            on_failed(reason)
        else:
            log.error(reason)

    def do_load() -> None:
        try:
            engine, template = load()
        except Exception as exc:
            fail(f"The model failed to load: {exc}")
            return
        engine.on_fatal = fail
        rt.template = template
        rt.worker = EngineWorker(engine, opts.max_queue, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=do_load, name="edge-load", daemon=True).start()
        yield
        if rt.worker is not None:
            rt.worker.close()

    app = FastAPI(title="edge-qwen", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.runtime = rt

    install_guard(
        app,
        metrics,
        api_key=opts.api_key,
        max_body_bytes=opts.max_body_bytes,
        body_timeout_s=opts.body_timeout_s,
        cors_origins=opts.cors_origins,
    )
    install_error_handlers(app)
    _install_routes(app, rt, opts, metrics)
    return app


def _install_routes(app: FastAPI, rt: Runtime, opts: ServerOptions, metrics: Metrics) -> None:
    page = (resources.files("edge.server") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def web_chat() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP})

    @app.get("/health")
    async def health() -> JSONResponse:
        if rt.worker is None or rt.failed:
            return JSONResponse(
                {"status": "error" if rt.failed else "loading", "detail": rt.failed}, 503
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        waiting, busy = (rt.worker.waiting, rt.worker.busy) if rt.worker else (0, 0)
        return PlainTextResponse(
            metrics.render(waiting, busy), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/models", responses=OPENAPI_ERRORS)
    async def models() -> dict[str, Any]:
        card = {"id": rt.model_id, "object": "model", "created": 0, "owned_by": "edge-qwen"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", response_model=None, responses=OPENAPI_ERRORS)
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        worker, template = rt.ready()

        def prepare() -> tuple[chat_api.ChatJob, list[int]]:
            job = chat_api.build_job(req, template, default_format=opts.reasoning_format,
                                     n_vocab=worker.limits.n_vocab)  # fmt: skip
            return job, worker.engine.tokenize(job.prompt_text)

        # Off the event loop: a long prompt or a big schema takes a while to render and
        # tokenize, and every other client would wait for it meanwhile.
        job, prompt = await run_in_threadpool(prepare)
        work = Job(prompt, job.params, job.control)
        # Checked before answering, so refusals get a status; the response then starts at
        # once, so a client that leaves during a long prompt is noticed and its work stopped.
        worker.admit(work)
        events = worker.stream(work)
        if req.stream:
            return EventSourceResponse(_chat_sse(job, rt.model_id, events))
        return await _complete(job, rt.model_id, events)

    @app.post("/v1/completions", response_model=None, responses=OPENAPI_ERRORS)
    async def completions(req: CompletionRequest) -> Any:
        worker, _ = rt.ready()
        return await _text_completion(req, worker, rt.model_id)


async def _frame(
    events: AsyncIterator[Any],
    on_token: Callable[[TokenEvent], bytes],
    on_finish: Callable[[Finish], list[dict[str, Any]]],
    head: tuple[dict[str, Any], ...] = (),
) -> AsyncIterator[bytes]:
    """SSE framing for every stream, in one place: `data:` events, keep-alive comments while
    the prompt is read, an error sent in-band once the status line is gone, then [DONE].
    `on_token` gives a token's SSE bytes (b"" for none): the hot path, one write a token.
    Closing this iterator (the client left) cancels the generation."""
    for payload in head:
        yield _data(payload)
    try:
        event = await anext(events, None)
        while event is not None:
            if isinstance(event, TokenEvent):
                data = on_token(event)
                if data:
                    yield data
            elif isinstance(event, Keepalive):
                yield b": keep-alive\n\n"
            elif isinstance(event, Finish):
                for payload in on_finish(event):
                    yield _data(payload)
                break
            event = await anext(events, None)
    except Exception as exc:
        yield b"data: " + bytes(error_response(exc).body) + b"\n\n"
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    yield b"data: [DONE]\n\n"


def _chat_sse(
    job: chat_api.ChatJob, model: str, events: AsyncIterator[Any]
) -> AsyncIterator[bytes]:
    """Chat chunks: role, deltas, one finish chunk with timings, the optional usage chunk."""
    writer = chat_api.ChunkWriter(job, model)
    sse = chat_api.ChunkBytes(job, model)

    def on_token(event: TokenEvent) -> bytes:
        return b"".join(map(sse.delta, writer.text(event.text))) if event.text else b""

    def on_finish(event: Finish) -> list[dict[str, Any]]:
        out = [chat_api.chunk(job, model, d) for d in writer.finish(event.reason)]
        final = chat_api.chunk(job, model, {}, writer.finish_reason(event.reason))
        out.append({**final, "timings": chat_api.timings(event)})
        if job.include_usage:
            out.append({**final, "choices": [], "usage": chat_api.usage(event)})
        return out

    role = chat_api.chunk(job, model, {"role": "assistant", "content": ""})
    return _frame(events, on_token, on_finish, head=(role,))


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + chat_api.dumps(payload).encode() + b"\n\n"


async def _complete(
    job: chat_api.ChatJob, model: str, events: AsyncIterator[Any]
) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    writer = chat_api.ChunkWriter(job, model)
    finish: Finish | None = None
    try:
        async for event in events:
            if isinstance(event, TokenEvent) and event.text:
                writer.text(event.text)
            elif isinstance(event, Finish):
                writer.finish(event.reason)
                finish = event
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # a gone client cancels the work
    assert finish is not None
    message: dict[str, Any] = {"role": "assistant", "content": writer.content}
    if job.return_reasoning and job.reasoning_format == "separate" and writer.reasoning:
        message["reasoning_content"] = message["reasoning"] = writer.reasoning
    if writer.tool_calls:
        message["tool_calls"] = writer.tool_calls
        message["content"] = writer.content or None
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": job.created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": writer.finish_reason(finish.reason)}],
        "usage": chat_api.usage(finish),
        "timings": chat_api.timings(finish),
    }  # fmt: skip


async def _text_completion(req: CompletionRequest, worker: EngineWorker, model: str) -> Any:
    """POST /v1/completions: the prompt is completed as is (no chat template)."""
    from edge.engine import SamplingParams, ThinkingControl

    if req.n != 1:
        raise ParamError("n", "Only n=1 is supported.")
    prompt_text = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
    chat_api.check_text(prompt_text, "prompt")
    params = SamplingParams(
        temperature=0.7 if req.temperature is None else req.temperature, top_p=req.top_p or 0.8,
        top_k=20 if req.top_k is None else req.top_k, min_p=req.min_p or 0.0, seed=req.seed,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty, logit_bias=chat_api.parse_logit_bias(req.logit_bias, worker.limits.n_vocab),
        max_tokens=req.max_tokens or 256, stop=[req.stop] if isinstance(req.stop, str) else list(req.stop or []),
    )  # fmt: skip
    prompt = await run_in_threadpool(worker.engine.tokenize, prompt_text)
    work = Job(prompt, params, ThinkingControl(loop_guard=False))
    worker.admit(work)  # refusals before the response starts keep their status
    events = worker.stream(work)
    ident, created = "cmpl-" + chat_api.secrets.token_hex(12), int(time.time())

    def body(text: str, finish: str | None) -> dict[str, Any]:
        return {"id": ident, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}  # fmt: skip

    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)

        def on_finish(event: Finish) -> list[dict[str, Any]]:
            last = body("", chat_api.openai_finish(event.reason))
            return (
                [last, {**last, "choices": [], "usage": _plain_usage(event)}] if usage else [last]
            )

        def on_token(event: TokenEvent) -> bytes:
            return _data(body(event.text, None)) if event.text else b""

        return EventSourceResponse(_frame(events, on_token, on_finish))
    text, finish = "", None
    try:
        async for event in events:
            if isinstance(event, TokenEvent):
                text += event.text
            elif isinstance(event, Finish):
                finish = event
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert finish is not None
    return {
        **body(text, chat_api.openai_finish(finish.reason)),
        "usage": _plain_usage(finish),
    }


def _plain_usage(finish: Finish) -> dict[str, Any]:
    return {k: v for k, v in chat_api.usage(finish).items() if not k.endswith("details")}
