"""Helpers for the fast server tests: an app over a FakeEngine in process (no model, no
uvicorn), driven through httpx's ASGI transport, and an SSE body parser."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import EngineAPI
from edge.server import create_app
from edge.server.pulls import Puller
from tests.support.fake_engine import FakeEngine


@functools.cache
def qwen_template() -> ChatTemplate:
    """Qwen3's own chat template, from the real tokenizer files."""
    from edge.model.synthetic import tokenizer_files_dir

    config = json.loads((tokenizer_files_dir() / "tokenizer_config.json").read_text("utf-8"))
    return ChatTemplate(config["chat_template"])


@asynccontextmanager
async def client_of(
    engine: FakeEngine,
    options: Settings | None = None,
    load: Callable[[], tuple[EngineAPI, ChatTemplate]] | None = None,
    ready: bool = True,
    pull: Puller | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A client of the app around `engine`; with `ready`, once the model has "loaded"."""
    app = create_app("fake", load or (lambda: (engine, qwen_template())), options, pull=pull)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(500 if ready else 0):  # the model "loads" in a background thread
                if (await client.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            yield client, app
    engine.close()


def stream_while_silent(path: str, body: dict[str, Any], silence: float = 0.4) -> httpx.Response:
    """A streamed request whose engine stays silent for `silence` seconds before its one
    token, "late" (as while a long prompt is read): the keep-alive tests' common part.
    The caller shortens `edge.server.worker.KEEPALIVE_AFTER` first."""
    engine = FakeEngine()
    engine.enqueue(["late"], "stop")
    engine.gate.clear()

    async def go() -> httpx.Response:
        async with client_of(engine) as (client, _):
            request = asyncio.create_task(client.post(path, json={**body, "stream": True}))
            await asyncio.sleep(silence)
            engine.gate.set()
            return await request

    return run(go)


def run(test: Callable[[], Any]) -> Any:
    """Run an async test body with a deadline."""
    return asyncio.run(asyncio.wait_for(test(), 30))


def sse(body: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON decoded; [DONE] as the string."""
    out: list[Any] = []
    for line in body.split("\n"):
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def events_of(body: str) -> list[str]:
    """The raw events of an SSE body (what lies between blank lines), checking that the
    body is made of whole events only."""
    assert body.endswith("\n\n"), body[-80:]
    return body[:-2].split("\n\n")
