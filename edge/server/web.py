"""The small routes: the web chat page, /health, /metrics and /v1/models."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from edge.server.errors import OPENAPI_ERRORS
from edge.server.metrics import Metrics
from edge.server.runtime import Runtime

# The page's own inline script and style only; nothing from elsewhere, no plugins, no framing.
CSP = (
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'none'; object-src 'none'; frame-ancestors 'none'"
)


PROMETHEUS = "text/plain; version=0.0.4"


@functools.cache
def page() -> str:
    """The web chat page (read once)."""
    return (resources.files("edge.server") / "static" / "index.html").read_text(encoding="utf-8")


def model_list(model_id: str) -> dict[str, Any]:
    """/v1/models' body: the one model served."""
    card = {"id": model_id, "object": "model", "created": 0, "owned_by": "edge-qwen"}
    return {"object": "list", "data": [card]}


def install(app: FastAPI, rt: Runtime, metrics: Metrics) -> None:
    """The page, the probes and the model list."""

    @app.get("/", include_in_schema=False)
    async def web_chat() -> HTMLResponse:
        return HTMLResponse(page(), headers={"Content-Security-Policy": CSP})

    @app.get("/health")
    async def health() -> JSONResponse:
        # Never wakes the model. Asleep is healthy (200): the next request wakes it, and a
        # router or load balancer must go on sending requests to a sleeping replica.
        if rt.failed:
            return JSONResponse({"status": "error", "detail": rt.failed}, 503)
        if rt.state in ("loading", "restarting"):
            return JSONResponse({"status": rt.state, "detail": None, **rt.describe()}, 503)
        status = "ok" if rt.state == "ready" else rt.state  # asleep or waking
        return JSONResponse({"status": status, **rt.describe()})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        w = rt.worker
        waiting, busy = (w.waiting, w.busy) if w else (0, 0)
        return PlainTextResponse(
            metrics.render(waiting, busy, w.engine.shelf if w else None, loaded=w is not None),
            media_type=PROMETHEUS,
        )

    @app.get("/v1/models", responses=OPENAPI_ERRORS)
    async def models() -> dict[str, Any]:
        return model_list(rt.model_id)
