"""Ollama's API under /api/: the routes, and one generation's events streamed as NDJSON
lines (Ollama streams unless the request says `"stream": false`) or folded into one object.
What a request means is request.py's, what a line holds answer.py's.

For the clients that speak only Ollama's API: Open WebUI's Ollama connection, Home
Assistant's Ollama integration, Enchanted, Page Assist, the `ollama` CLI and libraries,
Copilot's Ollama provider (which asks /api/version, /api/tags and /api/show, then sends
its chats to /v1/chat/completions).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from edge.chat.template import ChatTemplate
from edge.engine import Finish, TokenEvent
from edge.errors import NotFoundError
from edge.server import sse
from edge.server.errors import OLLAMA_ERRORS, error_json
from edge.server.ollama import answer, request
from edge.server.ollama.answer import Lines, ModelCard, PartWriter, line, rfc3339
from edge.server.ollama.request import OllamaSpec
from edge.server.ollama.schema import (
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaModelRequest,
    OllamaPullRequest,
)
from edge.server.pulls import Puller, PullGate, PullPlan, PullStep, Throttle
from edge.server.runtime import VISIT, Runtime
from edge.server.worker import EngineWorker, Stream
from edge.server.worker import fold as fold_events

NDJSON = "application/x-ndjson"
DONE = [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]

log = logging.getLogger("edge.server")


class JsonBody(APIRoute):
    """A route whose body is JSON whatever its Content-Type, as Ollama reads bodies: the
    curl lines of Ollama's documentation send none, so curl says form-urlencoded."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def as_json(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
            return await handler(Request(scope, request.receive))

        return as_json


def install(app: FastAPI, rt: Runtime, puller: Puller | None = None) -> None:
    """The routes; `puller` lets /api/pull fetch models into the store (without one, only
    the served model's names succeed)."""
    gate = PullGate()
    up_ns = time.time_ns()  # the "modified" time of a model whose file is not known
    api = APIRouter(route_class=JsonBody)

    @api.get("/api/version", responses=OLLAMA_ERRORS)
    async def version() -> dict[str, str]:
        return {"version": answer.VERSION}

    @api.get("/api/tags", responses=OLLAMA_ERRORS)
    async def tags() -> dict[str, Any]:
        # Answered while the model loads too: clients list models to set up a connection.
        return {"models": [model_card(rt, up_ns).tag()]}

    @api.get("/api/ps", responses=OLLAMA_ERRORS)
    async def ps() -> dict[str, Any]:
        # A sleeping model is not loaded: clients show what holds memory now.
        loaded = rt.worker is not None and not rt.failed
        card = model_card(rt, up_ns)
        return {"models": [card.loaded(rt.expires_in)] if loaded else []}

    @api.post("/api/show", responses=OLLAMA_ERRORS)
    async def show(req: OllamaModelRequest) -> dict[str, Any]:
        request.check_model(req.model or req.name, rt.model_id)
        template = rt.template or rt.ready()[1]  # kept while the model sleeps: no wake
        return model_card(rt, up_ns).show(template.source)

    @api.post("/api/pull", response_model=None, responses=OLLAMA_ERRORS)
    async def pull(req: OllamaPullRequest) -> Any:
        return await pull_model(rt, req, puller, gate)

    @api.post("/api/chat", response_model=None, responses=OLLAMA_ERRORS)
    async def chat(req: OllamaChatRequest) -> Any:
        return await generation(rt, req, Lines(req.model or request.listed_name(rt.model_id), True))

    @api.post("/api/generate", response_model=None, responses=OLLAMA_ERRORS)
    async def generate(req: OllamaGenerateRequest) -> Any:
        return await generation(
            rt, req, Lines(req.model or request.listed_name(rt.model_id), False)
        )

    app.include_router(api)


async def pull_model(
    rt: Runtime, req: OllamaPullRequest, puller: Puller | None, gate: PullGate
) -> Any:
    """/api/pull: the served model, or one already stored, at once; a name the puller
    maps, pulled with progress lines; anything else a 404 as Ollama says it."""
    name = req.model or req.name
    if request.serves(name, rt.model_id):
        return at_once(req.stream)
    # Off the event loop: the puller may look in the store.
    plan = await run_in_threadpool(puller, name or "") if puller else None
    if plan is None:
        how = (
            "it pulls qwen3:0.6b[-QUANT], hf.co/OWNER/REPO[:QUANT] and its store's names."
            if puller
            else "pulling models over the API is not supported: run `edge-qwen pull` where it runs."
        )
        raise NotFoundError(
            f"pull model manifest: '{name}' is not served here",
            f"This server serves '{request.listed_name(rt.model_id)}'; {how}",
        )
    if plan.stored:
        return at_once(req.stream)
    gate.enter(plan.name)  # a second pull gets its 429 before any answer starts
    items = start_pull(plan, gate, rt.model_id)
    if req.stream:
        return StreamingResponse(pull_lines(items), media_type=NDJSON)
    async for item in drain(items):
        if isinstance(item, Exception):
            raise item
    return {"status": "success"}


def at_once(stream: bool) -> Any:
    """A pull with nothing to do: success, streamed or as one object."""
    if not stream:
        return {"status": "success"}
    steps = [{"status": "pulling manifest"}, {"status": "success"}]
    return StreamingResponse(iter(map(line, steps)), media_type=NDJSON)


PullItem = dict[str, Any] | Exception | None  # a line, the failure, or the end


def start_pull(plan: PullPlan, gate: PullGate, serving: str) -> asyncio.Queue[PullItem]:
    """Run `plan` in a thread of its own (minutes of work, never on the event loop), which
    gives the gate back when it ends, whether or not anyone still reads. Its lines, a
    failure, and None at the end arrive in the returned queue."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[PullItem] = asyncio.Queue()
    throttle = Throttle()

    def put(item: PullItem) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:  # the loop has closed (the server stopped): nobody reads
            pass

    def progress(step: PullStep) -> None:
        if throttle.passes(step):
            put(answer.pull_status(step, plan.name))

    def work() -> None:
        try:
            put({"status": "pulling manifest"})
            plan.run(progress)
            for step in DONE:
                put(step)
            put({"status": "success"})
            log.info(
                "/api/pull: %s is in the store; still serving %s (serve it with "
                "`edge-qwen serve --model %s`)",
                plan.name,
                serving,
                plan.name,
            )
        except Exception as exc:
            log.warning("/api/pull of %s failed: %s", plan.name, exc)
            put(exc)
        finally:
            gate.leave()
            put(None)

    threading.Thread(target=work, name="edge-pull", daemon=True).start()
    return items


async def drain(items: asyncio.Queue[PullItem]) -> AsyncIterator[dict[str, Any] | Exception]:
    """The pull's lines and failure, until its end."""
    while (item := await items.get()) is not None:
        yield item


async def pull_lines(items: asyncio.Queue[PullItem]) -> AsyncIterator[bytes]:
    """NDJSON: the progress lines, then success, or a failure as an `{"error": …}` line
    (the status is already sent; Ollama's clients raise on it)."""
    async for item in drain(items):
        yield line(error_json(item, "/api/")[1] if isinstance(item, Exception) else item)


async def generation(
    rt: Runtime, req: OllamaChatRequest | OllamaGenerateRequest, lines: Lines
) -> Any:
    """One chat or generate request: a load answered at once, or a generation streamed as
    NDJSON or folded into one object."""
    started = time.time_ns()
    request.check_model(req.model, rt.model_id)
    keep = req.keep_alive_s()
    if request.is_load(req) and keep == 0:  # an unload: answered at once, never wakes it
        rt.keep_alive(0)
        return lines.object(rfc3339(time.time_ns()), {}, {"done": True, "done_reason": "unload"})
    worker, template = await rt.awake()  # a request that loads the model waits for it
    rt.keep_alive(keep)
    clock = (started, loaded_ns())
    if request.is_load(req):  # Ollama answers these with one object, streamed or not
        return lines.object(rfc3339(time.time_ns()), {}, {"done": True, "done_reason": "load"})
    # Off the event loop, as for every API: rendering and tokenizing take a while.
    spec, prompt = await run_in_threadpool(prepare, req, worker, template)
    events = worker.start(spec.job(prompt))  # a refusal raises here, with its status
    if req.stream:
        return StreamingResponse(stream(spec, lines, events, clock), media_type=NDJSON)
    return await fold(spec, lines, events, clock)


def loaded_ns() -> int:
    """How long this request waited for the model to load (Ollama's load_duration)."""
    visit = VISIT.get()
    return int((visit.load_s or 0.0) * 1e9) if visit is not None else 0


def prepare(
    req: OllamaChatRequest | OllamaGenerateRequest, worker: EngineWorker, template: ChatTemplate
) -> tuple[OllamaSpec, list[int]]:
    """The spec and its prompt's tokens."""
    if isinstance(req, OllamaChatRequest):
        spec = request.build_chat_spec(req, template)
    else:
        spec = request.build_generate_spec(req, template)
    return spec, worker.engine.tokenize(spec.prompt_text)


def final(
    lines: Lines, delta: dict[str, Any], finish: Finish, clock: tuple[int, int]
) -> dict[str, Any]:
    """The last object: done, why, the counts and durations."""
    now = time.time_ns()
    tail = {"done": True, "done_reason": answer.done_reason(finish.reason)}
    return lines.object(rfc3339(now), delta, {**tail, **answer.counts(finish, *clock, now)})


def stream(
    spec: OllamaSpec, lines: Lines, events: Stream, clock: tuple[int, int]
) -> AsyncIterator[bytes]:
    """NDJSON: a line per delta, the final line with done and the durations; an error after
    the status line as a line `{"error": …}`, which Ollama's clients raise."""
    writer = PartWriter(spec)

    def on_token(event: TokenEvent) -> bytes:
        return b"".join(map(lines.delta, writer.text(event.text))) if event.text else b""

    def on_finish(finish: Finish) -> bytes:
        held = b"".join(map(lines.delta, writer.finish(finish.reason)))
        return held + line(final(lines, {}, finish, clock))

    def on_error(exc: Exception) -> bytes:
        return line(error_json(exc, "/api/")[1])

    # No keep-alive bytes: an NDJSON line must be a whole object, and clients parse each.
    return sse.relay(events, on_token, on_finish, on_error, keepalive=b"")


async def fold(
    spec: OllamaSpec, lines: Lines, events: Stream, clock: tuple[int, int]
) -> dict[str, Any]:
    """The non-streaming answer: the same stream, folded."""
    writer = PartWriter(spec)
    finish = await fold_events(events, lambda e: writer.text(e.text) if e.text else None)
    writer.finish(finish.reason)
    return final(lines, answer.folded(writer), finish, clock)


def model_card(rt: Runtime, up_ns: int) -> ModelCard:
    """The served model's card: the engine's reading of the GGUF header once loaded (the
    real engine has one; a test's fake has none), the file's size and time. The runtime
    keeps them from the last load, so a sleeping model's card stays the same."""
    info = rt.info
    size, modified = 0, up_ns
    path = getattr(info, "path", None)
    if path is not None:
        try:
            st = Path(path).stat()
            size, modified = st.st_size, st.st_mtime_ns
        except OSError:
            pass
    n_ctx = rt.n_ctx
    return answer.card(rt.model_id, info, size, modified, n_ctx)
