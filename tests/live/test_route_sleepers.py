"""`edge-qwen route` with a replica asleep at start: the router starts on the one that
answers, warns about the other, and sends it traffic once it wakes on the same port.

One router start (LiteLLM's ~40 s) covers all of it. The sleeper wakes with another
model file than the first replica, so the name its deployment was given at start (the
first replica's) is not its own: edge-qwen serve answers whatever `model` is asked.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.cli import route, serve
from tests.support.live_server import free_port

WAKE_LIMIT_S = 60.0  # cooldown 5 s, then the next draw that picks it; generous for CI
ASLEEP_REQUESTS = 4


def ask(client: httpx.Client, url: str) -> str | None:
    """One chat request through the router; the replica that answered it (None: failed)."""
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    r = client.post(f"{url}/chat/completions", json=body)
    return r.headers.get("x-litellm-model-id") if r.status_code == 200 else None


def chats_served(replica: str) -> int:
    """The chat requests a replica answered with 200, from its /metrics."""
    page = httpx.get(f"{replica}/metrics", timeout=5).text
    found = re.search(r'edge_requests_total\{api="chat_completions",status="200"\} (\d+)', page)
    return int(found.group(1)) if found else 0


def test_a_replica_asleep_at_start_gets_traffic_once_it_wakes(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], router_venv: Path
) -> None:
    env = {**cli_env, "EDGE_QWEN_ROUTER_VENV": str(router_venv)}
    sleeper_port = free_port()
    sleeper = f"http://127.0.0.1:{sleeper_port}"
    with serve(["-m", str(gguf_of("scripted", "Q8_0"))], cli_env) as (awake, _):
        with route([sleeper, awake], env) as (url, proc), httpx.Client(timeout=60) as client:
            assert url.endswith("/v1"), "the router did not start with one replica asleep"
            # replica-0 is the sleeper: every request goes to the one awake, none is lost.
            before = Counter(ask(client, url) for _ in range(ASLEEP_REQUESTS))
            assert before == {"replica-1": ASLEEP_REQUESTS}, before
            wake = ["-m", str(gguf_of("scripted", "F16"))]
            with serve(wake, cli_env, port=sleeper_port):
                seen: Counter[str | None] = Counter()
                deadline = time.monotonic() + WAKE_LIMIT_S
                while seen["replica-0"] == 0 and time.monotonic() < deadline:
                    seen[ask(client, url)] += 1
                    time.sleep(0.2)
                assert seen["replica-0"] > 0, f"the sleeper got no traffic: {seen}"
                assert seen[None] == 0, seen
                # Its own count agrees (at least: LiteLLM's health checks are chats too).
                assert chats_served(sleeper) >= seen["replica-0"]
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert f"warning: replica {sleeper} cannot be reached" in err, err[-2000:]
    assert "1 answering" in err
