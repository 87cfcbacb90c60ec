"""Sleeping when idle, waking on demand, reloading after an engine fault: the server's
side (runtime.py) over fake engines, in process. A load here makes a fresh FakeEngine, so
"freed" means the engine was closed and a new one answers. The same life with the real
engine and uvicorn is in tests/live/test_sleep.py."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from edge.config import Settings
from edge.engine import Limits
from edge.server.runtime import MAX_RESTARTS_IN_WINDOW, default_idle_s
from tests.support.fake_engine import FakeEngine
from tests.support.prompts import HI
from tests.support.seam import client_of, qwen_template, run

CHAT = {"messages": HI, "max_tokens": 4}
WAIT = 10.0


class Loads:
    """A `load` that makes a new FakeEngine each time (`prepare` scripts each one)."""

    def __init__(self, prepare: Callable[[FakeEngine], None] | None = None) -> None:
        self.engines: list[FakeEngine] = []
        self.prepare = prepare

    def __call__(self) -> tuple[FakeEngine, Any]:
        engine = FakeEngine()
        if self.prepare is not None:
            self.prepare(engine)
        self.engines.append(engine)
        return engine, qwen_template()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


async def until(client: httpx.AsyncClient, status: str) -> dict[str, Any]:
    """/health's body once its status is `status` (bounded)."""
    deadline = time.monotonic() + WAIT
    while True:
        body = (await client.get("/health")).json()
        if body["status"] == status:
            return dict(body)
        assert time.monotonic() < deadline, f"never {status}: {body}"
        await asyncio.sleep(0.02)


def test_an_idle_model_sleeps_and_the_next_request_wakes_it() -> None:
    loads = Loads()

    async def go() -> None:
        async with client_of(FakeEngine(), Settings(idle=0.3), load=loads) as (client, _):
            first = await client.post("/v1/chat/completions", json=CHAT)
            assert first.status_code == 200
            n = len(loads.engines)  # 1, or 2 on a machine so slow it slept in between
            asleep = await until(client, "asleep")
            assert loads.engines[-1].closed  # the model and its engine are gone
            assert "sleeps_in_s" not in asleep
            # Probes and listings neither wake it nor count as use.
            for path in ("/health", "/metrics", "/v1/models", "/api/tags", "/api/ps", "/"):
                assert (await client.get(path)).status_code == 200
            assert (await client.get("/api/ps")).json() == {"models": []}
            shown = await client.post("/api/show", json={"model": "fake"})
            assert shown.status_code == 200
            assert len(loads.engines) == n
            page = (await client.get("/metrics")).text
            assert metric(page, "edge_model_loaded") == 0
            assert metric(page, "edge_model_sleeps_total") == n
            # The next generation loads a fresh engine, waits for it, says how long.
            woken = await client.post("/v1/chat/completions", json=CHAT)
            assert woken.status_code == 200 and woken.json()["choices"][0]["message"]["content"]
            assert int(woken.headers["edge-qwen-load-ms"]) >= 0
            assert len(loads.engines) == n + 1 and not loads.engines[-1].closed
            page = (await client.get("/metrics")).text
            assert metric(page, "edge_model_loaded") == 1
            assert metric(page, "edge_model_loads_total") == n + 1

    run(go)


def test_a_long_stream_is_not_put_to_sleep_under_it() -> None:
    def slow(engine: FakeEngine) -> None:
        engine.step_s = 0.05
        engine.enqueue(["tick"] * 12, "stop")  # 0.6 s of tokens, three idle times

    loads = Loads(slow)

    async def go() -> None:
        async with client_of(FakeEngine(), Settings(idle=0.2), load=loads) as (client, _):
            body = {"messages": HI, "stream": True}
            seen, during = 0, []
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                async for chunk in r.aiter_text():
                    seen += chunk.count("tick")
                    if seen >= 8 and not during:  # well past the idle time
                        during.append((await client.get("/health")).json()["status"])
            assert seen == 12 and during == ["ok"] and not loads.engines[0].closed
            await until(client, "asleep")  # and once answered, it does sleep

    run(go)


def test_keep_alive_per_request_overrides_the_servers_idle_time() -> None:
    loads = Loads()

    async def go() -> None:
        async with client_of(FakeEngine(), Settings(idle=0.1), load=loads) as (client, _):
            kept = await client.post("/v1/chat/completions", json={**CHAT, "keep_alive": "-1"})
            assert kept.status_code == 200
            n = len(loads.engines)  # 1, or 2 if it slept before that request came
            await asyncio.sleep(0.5)
            assert (await client.get("/health")).json()["status"] == "ok"
            ps = (await client.get("/api/ps")).json()["models"]
            assert ps[0]["expires_at"].startswith("2318")  # Ollama's "never"
            bad = await client.post("/v1/chat/completions", json={**CHAT, "keep_alive": "soon"})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "keep_alive"
            # Ollama's unload: keep_alive 0 with no prompt frees it at once...
            unload = {"model": "fake", "keep_alive": 0}
            r = await client.post("/api/generate", json=unload)
            assert r.json()["done_reason"] == "unload"
            await until(client, "asleep")
            # ...and, asleep, an unload does not load it only to free it again.
            r = await client.post("/api/generate", json=unload)
            assert r.json()["done_reason"] == "unload" and len(loads.engines) == n
            # An Ollama load request (no prompt) wakes it, and says how long that took.
            r = await client.post("/api/chat", json={"model": "fake", "keep_alive": "5m"})
            assert r.json()["done_reason"] == "load" and len(loads.engines) == n + 1
            assert int(r.headers["edge-qwen-load-ms"]) >= 0
            ps = (await client.get("/api/ps")).json()["models"]
            assert ps and not ps[0]["expires_at"].startswith("2318")

    run(go)


def test_an_ollama_answer_after_a_wake_counts_the_load() -> None:
    def slow_load() -> tuple[FakeEngine, Any]:
        time.sleep(0.15)  # a load that takes a while, as a real one does
        return loads()

    loads = Loads()

    async def go() -> None:
        async with client_of(FakeEngine(), Settings(idle=0.05), load=slow_load) as (client, _):
            await until(client, "asleep")
            body = {"model": "fake", "prompt": "Hi", "stream": False}
            r = await client.post("/api/generate", json=body)
            assert r.status_code == 200
            assert r.json()["load_duration"] >= 0.1e9
            assert r.json()["total_duration"] >= r.json()["load_duration"]

    run(go)


def test_requests_arriving_together_share_one_wake() -> None:
    loads = Loads()

    async def go() -> None:
        async with client_of(FakeEngine(), Settings(idle=0.1), load=loads) as (client, _):
            await until(client, "asleep")
            n = len(loads.engines)
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=CHAT) for _ in range(5))
            )
            assert [a.status_code for a in answers] == [200] * 5
            assert len(loads.engines) == n + 1  # one wake for all five

    run(go)


def test_a_fatal_engine_error_is_answered_in_band_and_the_engine_reloads() -> None:
    def first_fails(engine: FakeEngine) -> None:
        if not loads.engines:
            engine.enqueue_fatal(["par", "tial"], "llama.cpp failed to decode a batch (code -3)")

    loads = Loads(first_fails)

    async def go() -> None:
        async with client_of(FakeEngine(), load=loads) as (client, _):
            body = {"messages": HI, "stream": True}
            cut = await client.post("/v1/chat/completions", json=body)
            assert cut.status_code == 200 and "par" in cut.text
            assert "code -3" in cut.text and cut.text.rstrip().endswith("data: [DONE]")
            health = await until(client, "ok")
            assert health["restarts"] == 1 and "code -3" in health["last_restart"]
            assert loads.engines[0].closed and len(loads.engines) == 2
            again = await client.post("/v1/chat/completions", json=CHAT)
            assert again.status_code == 200
            assert metric((await client.get("/metrics")).text, "edge_engine_restarts_total") == 1

    run(go)


def test_an_engine_that_keeps_failing_stops_the_server() -> None:
    def always_fails(engine: FakeEngine) -> None:
        engine.enqueue_fatal([], "CUDA error: an illegal memory access")

    loads = Loads(always_fails)
    failed: list[str] = []

    async def go() -> dict[str, Any]:
        async with client_of(FakeEngine(), load=loads) as (client, app):
            app.state.runtime.on_failed = failed.append
            for _ in range(MAX_RESTARTS_IN_WINDOW + 1):
                await until(client, "ok")
                r = await client.post("/v1/chat/completions", json=CHAT)
                assert r.status_code == 503 and "CUDA error" in r.json()["error"]["message"]
            return await until(client, "error")

    health = run(go)
    assert "failed 4 times in a minute" in health["detail"]
    assert failed and len(loads.engines) == MAX_RESTARTS_IN_WINDOW + 1


@pytest.mark.parametrize(
    ("layers", "gpu", "seconds"),
    [(0, None, 1800.0), (29, "CUDA0", 300.0), (29, "Vulkan0", 300.0), (29, "Metal", 1800.0)],
)
def test_the_default_idle_time_follows_the_backend(
    layers: int, gpu: str | None, seconds: float
) -> None:
    assert default_idle_s(layers, gpu) == seconds


def test_a_server_without_idle_never_sleeps() -> None:
    loads = Loads()

    async def go() -> None:
        async with client_of(FakeEngine(), load=loads) as (client, app):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            await asyncio.sleep(0.3)
            assert (await client.get("/health")).json()["status"] == "ok"
            assert app.state.runtime.sleep_now() is True  # it can, when asked
            assert (await client.get("/health")).json()["status"] == "asleep"

    run(go)


def test_a_failed_engine_is_freed_only_when_no_request_holds_it() -> None:
    """A request that took the worker may still be tokenizing with the dead engine's
    vocabulary: the engine is freed, and the next one loaded, only once it lets go."""

    def two_slots(engine: FakeEngine) -> None:
        engine.limits = Limits(engine.limits.n_vocab, engine.limits.n_ctx, 2)
        engine._slots = threading.Semaphore(2)
        if not loads.engines:
            engine.enqueue(["held"] * 3, "stop")
            engine.enqueue_fatal([], "llama.cpp failed to decode a batch (code -3)")

    loads = Loads(two_slots)

    async def go() -> None:
        async with client_of(FakeEngine(), load=loads) as (client, _):
            first = loads.engines[0]
            first.gate.clear()  # the holder's stream waits here, its worker taken
            holder = asyncio.ensure_future(
                client.post("/v1/chat/completions", json={"messages": HI, "stream": True})
            )
            while not first.jobs:
                await asyncio.sleep(0.01)
            failed = await client.post("/v1/chat/completions", json=CHAT)
            assert failed.status_code == 503  # the second job hit the fatal failure...
            await asyncio.sleep(0.3)
            assert not first.closed and len(loads.engines) == 1  # ...but nothing is freed
            health = (await client.get("/health")).json()
            assert health["status"] == "restarting" and health["restarts"] == 1
            first.gate.set()
            assert (await holder).status_code == 200
            await until(client, "ok")
            assert first.closed and len(loads.engines) == 2

    run(go)
