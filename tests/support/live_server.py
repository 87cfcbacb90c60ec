"""A real uvicorn on 127.0.0.1 around the real engine, in this process (a thread): what the
live server tests share, and the port and readiness helpers of those that start
`edge-qwen serve` as a process (tests/support/cli.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import uvicorn

from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import Engine
from edge.engine.plan import make_plan, read_model_info
from edge.server import create_app
from edge.server.connections import connection_options

WAIT = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll /health until 200 (bounded); `alive` says whether the server is still running."""
    deadline = time.monotonic() + WAIT
    while True:
        assert alive(), "the server exited before it was ready"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)


@contextmanager
def serving(
    gguf: Path,
    options: Settings | None = None,
    n_ctx: int = 2048,
    parallel: int = 1,
    port: int | None = None,
) -> Iterator[tuple[str, Any]]:
    """A real uvicorn server in a thread, on the batching engine `edge-qwen serve` uses
    (on `port`, or a free one); yields (base URL, app)."""
    info = read_model_info(gguf)

    def load() -> tuple[Engine, ChatTemplate]:
        plan = make_plan(info, Settings(ctx=n_ctx, parallel=parallel))
        return Engine(gguf, plan, info), ChatTemplate.from_gguf(gguf)

    app = create_app("qwen3-test", load, options)
    head_timeout_s = (options or Settings()).header_timeout_s
    with running(app, port, **connection_options(head_timeout_s, None)) as url:
        yield url, app


@contextmanager
def running(app: Any, port: int | None = None, **config: Any) -> Iterator[str]:
    """A real uvicorn around `app` in a thread on 127.0.0.1 (on `port`, or a free one),
    with `uvicorn.Config`'s `config`; yields the base URL once /health answers 200."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT)


def error_of(r: httpx.Response) -> dict[str, Any]:
    """The `error` object of an OpenAI-shaped error answer, its four keys checked."""
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])
