"""`create_app(model_id, load, settings, on_failed, pull)`: the server, wired from its
pieces, with no module-level state.

The engine is loaded in the background so /health answers 503 until ready. The pieces:
guard.py (size, deadline, key, CORS), errors.py (the one error table), web.py (the page,
probes, metrics, models), and one folder per API (chat_completions/, completions/,
anthropic/, responses/, ollama/), each installed here in one line. Every API streams through sse.py
and starts its generations through runtime.py / worker.py, between the routes and the
engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import EngineAPI
from edge.server import web
from edge.server.anthropic import route as anthropic
from edge.server.chat_completions import route as chat_completions
from edge.server.completions import route as completions
from edge.server.errors import install_error_handlers
from edge.server.guard import install_guard
from edge.server.metrics import Metrics
from edge.server.ollama import route as ollama
from edge.server.pulls import Puller
from edge.server.responses import route as responses
from edge.server.runtime import NEVER, Runtime, Waker


def create_app(
    model_id: str,
    load: Callable[[], tuple[EngineAPI, ChatTemplate]],
    settings: Settings | None = None,
    on_failed: Callable[[str], None] | None = None,
    pull: Puller | None = None,
) -> FastAPI:
    """The API around a model that `load()` opens (in the background, at startup), with
    the serving half of `settings`: API key, queue, body limits, CORS, reasoning format.

    When loading fails, /health and every request say why, and `on_failed(reason)` runs:
    the CLI uses it to stop the server rather than leave it up without a model. With
    `settings.idle`, an unused model sleeps and the next request wakes it; an engine that
    fails is reloaded (runtime.py).

    `pull`, when given, lets Ollama's /api/pull fetch models into the store (the CLI's
    puller runs the model pipeline, which the server may not import); the server keeps
    serving the model it loaded.
    """
    opts = settings or Settings()
    metrics = Metrics()
    idle = opts.idle
    idle_s = NEVER if idle is None or idle < 0 or idle > 3.2e7 else idle  # over a year: never
    rt = Runtime(
        model_id,
        load,
        max_queue=opts.max_queue,
        metrics=metrics,
        idle_s=idle_s,
        on_failed=on_failed,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rt.start()
        yield
        rt.close()

    app = FastAPI(title="edge-qwen", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.runtime = rt
    app.add_middleware(Waker, runtime=rt)  # inside the Guard: a refused request holds nothing
    install_guard(
        app,
        metrics,
        api_key=opts.api_key,
        max_body_bytes=opts.max_body_bytes,
        body_timeout_s=opts.body_timeout_s,
        cors_origins=opts.cors_origins,
    )
    install_error_handlers(app)
    web.install(app, rt, metrics)
    # One line per API, each a folder of its own.
    chat_completions.install(app, rt, reasoning_format=opts.reasoning_format)
    completions.install(app, rt)
    anthropic.install(app, rt)
    responses.install(app, rt, keyed=opts.api_key is not None)
    ollama.install(app, rt, pull)
    return app
