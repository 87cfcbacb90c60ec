"""Sleep and wake with the real engine: the model freed when idle (its scheduler thread
gone, the process's resident memory down), loaded again by the next request, which
answers as before and says how long the load took. (The server's side of it over fakes,
keep_alive and engine restarts included, is tests/seam/test_sleep.py; a fatal decode
with the real engine is in test_batch.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx

from edge.config import Settings
from tests.support.cli import serve
from tests.support.live_server import serving

WAIT = 60.0
BODY = {"max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def wait_status(url: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        body = httpx.get(f"{url}/health", timeout=WAIT).json()
        if body["status"] == wanted:
            return dict(body)
        assert time.monotonic() < deadline, f"never {wanted}: {body}"
        time.sleep(0.05)


def test_the_real_engine_sleeps_and_wakes(gguf_of: Callable[[str, str], Path]) -> None:
    with serving(gguf_of("scripted", "Q8_0"), Settings(idle=1.0)) as (url, app):
        first = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=WAIT)
        assert first.is_success
        engine = app.state.runtime.worker.engine
        wait_status(url, "asleep")
        engine._thread.join(WAIT)  # closing joins the scheduler, then frees the model
        assert not engine._thread.is_alive()
        assert "edge_model_loaded 0" in httpx.get(f"{url}/metrics", timeout=WAIT).text
        woken = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=WAIT)
        assert woken.is_success and int(woken.headers["edge-qwen-load-ms"]) > 0
        assert woken.json()["choices"] == first.json()["choices"]  # the same model, reloaded
        assert app.state.runtime.worker.engine is not engine


def rss_mib(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def test_a_sleeping_server_gives_its_memory_back(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    """`edge-qwen serve --idle 2s` as a process: what it holds loaded (weights, a 16k
    context's KV and compute buffers) is given back asleep, and taken again on waking."""
    model = str(gguf_of("scripted", "Q8_0"))
    args = ["--model", model, "--idle", "2s", "--ctx", "16384", "--cache-ram", "0"]
    with serve(args, cli_env) as (url, proc):
        assert httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=WAIT).is_success
        loaded = rss_mib(proc.pid)
        wait_status(url, "asleep")
        deadline = time.monotonic() + WAIT
        # About 100 MiB here (of 230 loaded; the rest is Python and the libraries), most of it
        # the KV cache; freed on a thread of the server's own, so it may take a moment.
        while rss_mib(proc.pid) > loaded - 60:
            assert time.monotonic() < deadline, (loaded, rss_mib(proc.pid))
            time.sleep(0.1)
        asleep = rss_mib(proc.pid)
        woken = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=WAIT)
        assert woken.is_success and "edge-qwen-load-ms" in woken.headers
        assert rss_mib(proc.pid) > asleep + 30
