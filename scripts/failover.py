"""Failover on loopback: three `edge-qwen serve` replicas behind `edge-qwen route`, one
killed with SIGKILL while 30 streamed requests run, then restarted.

    python scripts/failover.py --model looping.gguf [--requests 30] [--tokens 48]

What it checks and reports: every request the router had not yet committed to the
killed replica (committed: it had read that replica's first chunk) is answered by
another one; requests sent after the kill all succeed; the
restarted replica gets traffic again, and how long that took. A request's replica is the
`x-litellm-model-id` header the router adds (`replica-0` …, from edge/route/litellm.py).
The tests run it at CI size (tests/live/test_route_failover.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from soak import free_port, isolated_env, start_serve, wait_ready  # noqa: E402

ROUTER_START_LIMIT = 180.0
REJOIN_LIMIT = 60.0
KILLED = "replica-0"
SLOTS = 4  # each replica's --parallel: at most this many of its streams are being answered


@dataclass
class Outcome:
    """One streamed request as the client saw it."""

    replica: str | None = None  # the router's x-litellm-model-id header
    chunks: int = 0  # data chunks received
    first_chunk_at: float | None = None  # monotonic; the opening (role) chunk counts
    first_token_at: float | None = None  # the first chunk with text or a tool call
    finished: bool = False  # a finish_reason and [DONE] arrived
    error: str | None = None


@dataclass
class Report:
    requests: int
    answered: int
    failed: int
    # A failed request's replica is the one the router had committed it to: it had read
    # that replica's first chunk. None may fail elsewhere. Unrouted: the router answered
    # an error status naming no replica, having run out of retries before any answered.
    failed_on_killed: int
    failed_elsewhere: int
    failed_unrouted: int
    # Of the failures: the client had no chunk yet at the kill (the router had it, or it
    # was in flight), and: no token yet (only the replica's opening chunk: queued there)
    failed_before_a_chunk: int
    failed_before_a_token: int
    errors: dict[str, int]
    by_replica: dict[str, int]
    after_kill_requests: int
    after_kill_answered: int
    after_kill_by_replica: dict[str, int]
    rejoin_s: float | None  # restarted replica ready → first request it answers
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        rows = [f"| {k} | {v} |" for k, v in asdict(self).items()]
        return "| figure | value |\n|---|---|\n" + "\n".join(rows)


def env_for(home: Path, router_venv: str | None) -> dict[str, str]:
    env = isolated_env(home)
    if router_venv:
        env["EDGE_QWEN_ROUTER_VENV"] = router_venv
    return env


def start_replica(
    model: Path, port: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    proc = start_serve(model, port, SLOTS, 2048, env, log)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


def start_router(
    urls: list[str], env: dict[str, str], log: Path, strategy: str
) -> tuple[str, subprocess.Popen[str]]:
    """`edge-qwen route URLS` on a free port; returns the address it prints."""
    args = [
        "route",
        *urls,
        "--port",
        str(free_port()),
        "--strategy",
        strategy,
    ]
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # blocks until ready (or exit: then "")
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the router did not start; see {log}")
    return line, proc


async def stream_one(client: httpx.AsyncClient, url: str, tokens: int, out: Outcome) -> None:
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": tokens,
        "stream": True,
    }
    try:
        async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            out.replica = response.headers.get("x-litellm-model-id")
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")
                out.error = f"HTTP {response.status_code}: {detail[:80]}"
                return
            await read_stream(response, out)
    except httpx.HTTPError as exc:
        out.error = type(exc).__name__


async def read_stream(response: httpx.Response, out: Outcome) -> None:
    finish = None
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            out.finished = finish is not None
            return
        chunk = json.loads(line[6:])
        if "error" in chunk:
            out.error = "error chunk: " + str(chunk["error"].get("message", ""))[:60]
            return
        out.chunks += 1
        out.first_chunk_at = out.first_chunk_at or time.monotonic()
        for choice in chunk.get("choices", []):
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
                out.first_token_at = out.first_token_at or time.monotonic()
    out.error = "stream cut"


async def wave(
    url: str, n: int, tokens: int, kill: tuple[subprocess.Popen[bytes], float] | None
) -> tuple[list[Outcome], float | None]:
    """`n` concurrent streams; with `kill`, SIGKILL that process `delay` s after the first chunk."""
    outs = [Outcome() for _ in range(n)]
    killed_at = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
        tasks = [asyncio.create_task(stream_one(client, url, tokens, o)) for o in outs]
        if kill:
            while not any(o.first_chunk_at for o in outs) and not all(t.done() for t in tasks):
                await asyncio.sleep(0.01)
            await asyncio.sleep(kill[1])
            kill[0].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
        await asyncio.gather(*tasks)
    return outs, killed_at


async def rejoin(url: str, tokens: int) -> float | None:
    """Seconds until a request is answered by the restarted replica (None: not within limit)."""
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
        while time.monotonic() - start < REJOIN_LIMIT:
            outs = [Outcome() for _ in range(3)]
            await asyncio.gather(*(stream_one(client, url, tokens, o) for o in outs))
            if any(o.replica == KILLED and o.finished for o in outs):
                return time.monotonic() - start
            await asyncio.sleep(0.2)
    return None


def classify(outs: list[Outcome], killed_at: float) -> dict[str, int]:
    failed = [o for o in outs if not o.finished]
    on_killed = [o for o in failed if o.replica == KILLED]
    unrouted = [o for o in failed if o.replica is None]
    no_chunk = [o for o in failed if o.first_chunk_at is None or o.first_chunk_at > killed_at]
    no_token = [o for o in failed if o.first_token_at is None or o.first_token_at > killed_at]
    return {
        "failed": len(failed),
        "on_killed": len(on_killed),
        "elsewhere": len(failed) - len(on_killed) - len(unrouted),
        "unrouted": len(unrouted),
        "no_chunk": len(no_chunk),
        "no_token": len(no_token),
    }


def run_failover(
    model: Path,
    requests: int = 30,
    tokens: int = 48,
    kill_after: float = 0.5,
    router_venv: str | None = None,
    strategy: str = "simple-shuffle",
    work: Path | None = None,
) -> Report:
    """The whole experiment; every process it starts is stopped before it returns."""
    work = work or Path(tempfile.mkdtemp(prefix="failover-"))
    env = env_for(work / "home", router_venv)
    ports = [free_port() for _ in range(3)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    procs: list[subprocess.Popen[bytes]] = []
    router = None
    started = time.monotonic()
    try:
        procs = [
            start_replica(model, p, env, work / f"replica-{i}.log") for i, p in enumerate(ports)
        ]
        url, router = start_router(urls, env, work / "router.log", strategy)
        outs, killed_at = asyncio.run(wave(url, requests, tokens, (procs[0], kill_after)))
        assert killed_at is not None
        after, _ = asyncio.run(wave(url, requests // 3, tokens, None))
        procs[0] = start_replica(model, ports[0], env, work / "replica-0.log")
        rejoin_s = asyncio.run(rejoin(url, tokens))
    finally:
        for proc in [*procs, *([router] if router else [])]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    c = classify(outs, killed_at)
    return Report(
        requests=requests,
        answered=requests - c["failed"],
        failed=c["failed"],
        failed_on_killed=c["on_killed"],
        failed_elsewhere=c["elsewhere"],
        failed_unrouted=c["unrouted"],
        failed_before_a_chunk=c["no_chunk"],
        failed_before_a_token=c["no_token"],
        errors=dict(Counter(o.error for o in outs if o.error)),
        by_replica=dict(Counter(str(o.replica) for o in outs)),
        after_kill_requests=len(after),
        after_kill_answered=sum(o.finished for o in after),
        after_kill_by_replica=dict(Counter(str(o.replica) for o in after)),
        rejoin_s=None if rejoin_s is None else round(rejoin_s, 2),
        wall_s=round(time.monotonic() - started, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a .gguf (the looping model)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=48, help="max_tokens of each answer")
    parser.add_argument("--kill-after", type=float, default=0.5, help="s after the first chunk")
    parser.add_argument("--strategy", default="simple-shuffle", help="edge-qwen route's")
    parser.add_argument("--router-venv", help="LiteLLM's venv (default: installed under home)")
    args = parser.parse_args()
    report = run_failover(
        args.model, args.requests, args.tokens, args.kill_after, args.router_venv, args.strategy
    )
    print(report.to_markdown())


if __name__ == "__main__":
    main()
