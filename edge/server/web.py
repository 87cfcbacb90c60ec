"""The small routes: the web chat page and its assets, /health, /metrics and /v1/models."""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from edge.server.errors import OPENAPI_ERRORS
from edge.server.metrics import Metrics
from edge.server.runtime import Runtime

# Scripts and styles from our own files only (no inline code, no eval), nothing else of
# any kind unless named: no images (model output must not fetch anything, not even a
# tracking pixel), no plugins, no <base>, no form posts, no framing. connect-src: the API.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'none'; font-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "cache-control": "no-cache",  # small, and it names the assets' current version
    "referrer-policy": "no-referrer",  # a link in an answer does not learn the LAN address
    "x-content-type-options": "nosniff",
}
# Asset URLs carry a hash of all the assets (/assets/<version>/app.js), so a browser
# may keep them for good: a new release is a new URL. Relative imports between the
# scripts stay within one version.
ASSET_HEADERS = {
    "cache-control": "public, max-age=31536000, immutable",
    "x-content-type-options": "nosniff",
}
KINDS = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
ASSETS = "/assets/"
PROMETHEUS = "text/plain; version=0.0.4"


@dataclass(frozen=True)
class Served:
    """One static answer: its status, headers and body, gzipped when the client takes it."""

    status: int
    headers: dict[str, str]
    body: bytes


NOT_FOUND = Served(404, {"content-type": "text/plain; charset=utf-8"}, b"Not found\n")


@dataclass(frozen=True)
class _File:
    kind: str
    plain: bytes
    gzipped: bytes

    def answer(self, headers: dict[str, str], accept_encoding: str) -> Served:
        base = {"content-type": self.kind, "vary": "accept-encoding", **headers}
        if "gzip" in accept_encoding.lower():
            return Served(200, {**base, "content-encoding": "gzip"}, self.gzipped)
        return Served(200, base, self.plain)


def _file(name: str, data: bytes) -> _File:
    kind = KINDS[name[name.rfind(".") :]]
    return _File(kind, data, gzip.compress(data, 9, mtime=0))


@dataclass(frozen=True)
class Site:
    """The page and its assets, read from the package once."""

    version: str
    page: _File
    assets: dict[str, _File]  # by URL path: /assets/<version>/<name>


@functools.cache
def site() -> Site:
    """The page and its assets (read once): every file under static/ but the vendored
    libraries' notes, the page's `{assets}` replaced by the versioned folder."""
    root = resources.files("edge.server") / "static"
    files: dict[str, bytes] = {}
    for folder in (root, root / "vendor"):
        for item in sorted(folder.iterdir(), key=lambda i: i.name):
            suffix = item.name[item.name.rfind(".") :]
            if item.is_file() and suffix in KINDS and item.name != "index.html":
                prefix = "" if folder is root else "vendor/"
                files[prefix + item.name] = item.read_bytes()
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    version = digest.hexdigest()[:12]
    html = (root / "index.html").read_text(encoding="utf-8")
    html = html.replace("{assets}", f"assets/{version}")
    assets = {f"{ASSETS}{version}/{name}": _file(name, data) for name, data in files.items()}
    return Site(version, _file("index.html", html.encode()), assets)


def static_answer(path: str, accept_encoding: str = "") -> Served | None:
    """The page (`/`) or one of its assets; 404 for any other path under /assets/ (an old
    version's, say) and for /favicon.ico; None for every other path. The server and, while the model
    sleeps, the supervisor answer these the same way, byte for byte."""
    s = site()
    if path == "/":
        return s.page.answer(PAGE_HEADERS, accept_encoding)
    if path == "/favicon.ico":  # browsers ask; there is none, and asking wakes nothing
        return NOT_FOUND
    if path.startswith(ASSETS):
        asset = s.assets.get(path)
        return NOT_FOUND if asset is None else asset.answer(ASSET_HEADERS, accept_encoding)
    return None


def model_list(model_id: str) -> dict[str, Any]:
    """/v1/models' body: the one model served."""
    card = {"id": model_id, "object": "model", "created": 0, "owned_by": "edge-qwen"}
    return {"object": "list", "data": [card]}


def install(app: FastAPI, rt: Runtime, metrics: Metrics) -> None:
    """The page, the probes and the model list."""

    @app.get("/", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    @app.get(ASSETS + "{name:path}", include_in_schema=False)
    async def web_chat(request: Request) -> Response:
        path = request.url.path
        served = static_answer(path, request.headers.get("accept-encoding", "")) or NOT_FOUND
        return Response(served.body, served.status, served.headers)

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
