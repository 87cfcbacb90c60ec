"""`create_app(settings, ...)`: the OpenAI-compatible HTTP API, with no module-level state.

Errors are translated once, by class, into OpenAI's `{"error": {...}}` shape; routes
only raise. The engine is loaded in the background so /health answers 503 until ready.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.chat.template import ChatTemplate
from edge.engine import EngineAPI, Finish, Job, TokenEvent
from edge.errors import (
    AuthError,
    BodyTooLargeError,
    ContextFullError,
    ContextOverflowError,
    EdgeError,
    EngineClosedError,
    LoadingError,
    ParamError,
    QueueFullError,
    UsageError,
    shutting_down,
)
from edge.server import chat_api
from edge.server.metrics import Metrics
from edge.server.schema import ChatCompletionRequest, CompletionRequest, ErrorResponse
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


# One table: error class → (HTTP status, OpenAI error type). First match wins.
_STATUS: list[tuple[type[Exception], int, str]] = [
    (ContextOverflowError, 400, "invalid_request_error"),
    (UsageError, 400, "invalid_request_error"),
    (AuthError, 401, "authentication_error"),
    (BodyTooLargeError, 413, "invalid_request_error"),
    (QueueFullError, 429, "rate_limit_error"),
    (LoadingError, 503, "server_error"),
    (ContextFullError, 503, "server_error"),
    (EngineClosedError, 503, "server_error"),
    (EdgeError, 500, "server_error"),
]


def error_body(
    message: str, etype: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def error_response(exc: Exception) -> JSONResponse:
    """The HTTP answer for any domain error."""
    for cls, status, etype in _STATUS:
        if isinstance(exc, cls):
            assert isinstance(exc, EdgeError)
            message = exc.message + (f" {exc.hint}" if exc.hint else "")
            code = "context_length_exceeded" if isinstance(exc, ContextOverflowError) else None
            headers = {"Retry-After": "2"} if status in (429, 503) else None
            param = getattr(exc, "param", None)
            return JSONResponse(error_body(message, etype, param, code), status, headers=headers)
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(error_body("Internal server error.", "server_error"), 500)


class Runtime:
    """The loaded model behind the routes; None fields while loading."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.worker: EngineWorker | None = None
        self.template: ChatTemplate | None = None
        self.failed: str | None = None
        self.draining = False

    def drain(self) -> None:
        """A graceful shutdown begins (on the event loop): running generations end now with
        a finish reason, queued and new requests get 503."""
        self.draining = True
        if self.worker is not None:
            self.worker.drain()

    def ready(self) -> tuple[EngineWorker, ChatTemplate]:
        if self.draining:  # also covers a model that finishes loading during the shutdown
            raise shutting_down()
        if self.worker is None or self.template is None or self.failed:
            raise LoadingError(
                self.failed or "The model is still loading.", "Retry in a few seconds."
            )
        return self.worker, self.template


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

    _install_guards(app, opts, metrics)
    _install_errors(app)
    _install_routes(app, rt, opts, metrics)
    return app


def _install_guards(app: FastAPI, opts: ServerOptions, metrics: Metrics) -> None:
    # The Guard refuses before anything reads the body. CORS, added after it, wraps it (the
    # last added runs first): a browser's preflight never carries the key, so it must be
    # answered before the Guard asks for one, and refusals then carry CORS headers too.
    # CORSMiddleware never reads the body, so the size limit still comes first.
    app.add_middleware(Guard, opts=opts, metrics=metrics)
    if opts.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(opts.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], allow_credentials=False)  # fmt: skip


class Guard:
    """Body-size limit, body deadline and API key, as plain ASGI.

    The size is checked twice: on Content-Length before anything is read, and on the bytes
    as they arrive, for chunked bodies that announce no length. The body must also arrive
    within `body_timeout_s`, so a client trickling bytes cannot hold a request open forever.
    (Starlette's BaseHTTPMiddleware would wrap `receive` and can make a streaming
    response look disconnected, which cancels generations that are still wanted.)
    """

    def __init__(self, app: Any, opts: ServerOptions, metrics: Metrics) -> None:
        self.app, self.opts, self.metrics = app, opts, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(int(message["status"]))
            await send(message)

        problem = self._check(scope)
        if problem is not None:
            await error_response(problem)(scope, receive, counting_send)
            return
        await self.app(scope, self._bounded(receive), counting_send)

    def _check(self, scope: dict[str, Any]) -> EdgeError | None:
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        size = headers.get("content-length", "")
        if size.isascii() and size.isdigit() and int(size) > self.opts.max_body_bytes:
            return BodyTooLargeError(f"The request body is over {self.opts.max_body_bytes} bytes.")
        if self.opts.api_key and str(scope.get("path", "")).startswith("/v1/"):
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.opts.api_key}".encode()):
                return AuthError("Missing or wrong API key.", "Send 'Authorization: Bearer <key>'.")
        return None

    def _bounded(self, receive: Any) -> Callable[[], Any]:
        """`receive`, refusing a body over the limit or late; untouched once the body is in
        (a streaming response then waits on it for the client's disconnect)."""
        limit, timeout = self.opts.max_body_bytes, self.opts.body_timeout_s
        deadline = time.monotonic() + timeout
        seen, done = 0, False
        close = {"Connection": "close"}  # the rest of the body is never read

        async def bounded() -> Any:
            nonlocal seen, done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise HTTPException(408, f"The request body did not arrive within {timeout:g} seconds.", close) from None  # fmt: skip
            if message["type"] != "http.request":
                done = True
                return message
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"The request body is over {limit} bytes.", close)
            done = not message.get("more_body", False)
            return message

        return bounded


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(EdgeError)
    async def on_edge_error(_: Request, exc: EdgeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = (
            f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
            if param
            else "Invalid JSON body."
        )
        return JSONResponse(error_body(message, "invalid_request_error", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        etype = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), etype), exc.status_code, exc.headers)


# What /openapi.json says errors look like (instead of FastAPI's 422 validation shape).
_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "OpenAI's error object"},
    "5XX": {"model": ErrorResponse, "description": "OpenAI's error object"},
}


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

    @app.get("/v1/models", responses=_ERRORS)
    async def models() -> dict[str, Any]:
        card = {"id": rt.model_id, "object": "model", "created": 0, "owned_by": "edge-qwen"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", response_model=None, responses=_ERRORS)
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

    @app.post("/v1/completions", response_model=None, responses=_ERRORS)
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
