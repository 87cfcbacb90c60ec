"""What sleeping frees and what waking costs, on a real `edge-qwen serve` process.

    python scripts/measure_sleep.py [--model PATH.gguf] [--ctx 8192] [--threads 1] [--runs 3]

Starts `edge-qwen serve --idle 2s` on the benchmark's 0.6b-shaped synthetic model (built
on first use, as `edge-qwen bench` does) and reads the server's resident memory
(/proc/PID/status: VmRSS, and its anonymous and file-backed parts; with --supervise, the
parent's and its child's) loaded and idle, after a chat, and asleep. Then, each run: the
time to first streamed token of a chat that wakes the model, against the same-sized
chat on the warm model right after (a different prompt, so no cached prefix helps
either), and the load time the server reports (Edge-Qwen-Load-Ms). Prints JSON. Linux
only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

WAIT = 120.0


def rss(pid: int) -> dict[str, int]:
    """Resident memory of `pid` and its children in MiB: total, anonymous (heap, KV) and
    file-backed (mmap)."""
    fields = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for one in [pid, *map(int, kids)]:
        for row in Path(f"/proc/{one}/status").read_text().splitlines():
            name, _, rest = row.partition(":")
            if name in fields:
                fields[name] += int(rest.split()[0]) // 1024
    return fields


def status(url: str) -> str:
    try:
        return str(httpx.get(f"{url}/health", timeout=10).json()["status"])
    except httpx.TransportError:
        return "not up yet"


def wait_for(url: str, wanted: str) -> None:
    deadline = time.monotonic() + WAIT
    while status(url) != wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"the server never became {wanted}")
        time.sleep(0.1)


def ttft(url: str, text: str) -> tuple[float, int | None]:
    """Seconds to the first streamed content, and the load the server says it waited for."""
    body = {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 8,
        "stream": True,
        "temperature": 0,
    }
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=WAIT) as r:
        r.raise_for_status()
        load = r.headers.get("edge-qwen-load-ms")
        for line in r.iter_lines():
            if '"content"' in line or '"reasoning_content"' in line:
                return time.perf_counter() - started, int(load) if load else None
    raise SystemExit("no token came")


def fds(pid: int) -> int:
    """Open file descriptors of `pid` and its children."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(len(list(Path(f"/proc/{one}/fd").iterdir())) for one in [pid, *map(int, kids)])


def cycles(url: str, pid: int, n: int, words: int) -> dict[str, Any]:
    """RSS and descriptors asleep before and after `n` more wake/sleep cycles: a leak of a
    load's memory, a thread or a socket shows as growth."""
    wait_for(url, "asleep")
    time.sleep(0.5)
    before = {"rss_mib": rss(pid)["VmRSS"], "fds": fds(pid)}
    for k in range(n):
        ttft(url, prompt(1000 + k, words))
        wait_for(url, "asleep")
    time.sleep(0.5)
    after = {"rss_mib": rss(pid)["VmRSS"], "fds": fds(pid)}
    return {"n": n, "asleep_before": before, "asleep_after": after}


def prompt(n: int, words: int) -> str:
    return f"Request {n}: " + " ".join(f"word{n}x{i}" for i in range(words))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="a GGUF (default: the bench's 0.6b Q4_K_M)")
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--words", type=int, default=100, help="prompt size (~3 tokens a word)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--supervise", action="store_true", help="sleep by process (serve --supervise)")
    ap.add_argument("--cycles", type=int, default=0, help="then this many more wake/sleep cycles")
    args = ap.parse_args()
    model = args.model or str(bench_model())
    url = f"http://127.0.0.1:{args.port}"
    cmd = [sys.executable, "-m", "edge.cli", "serve", "--model", model, "--port", str(args.port)]
    cmd += ["--ctx", str(args.ctx), "--threads", str(args.threads), "--idle", "2s"]
    cmd += ["--supervise" if args.supervise else "--no-supervise"]
    server = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(url, "ok")
        out: dict[str, Any] = {"model": Path(model).name, "ctx": args.ctx, "rss_mib": {}}
        out["supervised"] = args.supervise
        out["rss_mib"]["loaded"] = rss(server.pid)
        ttft(url, prompt(0, args.words))
        out["rss_mib"]["after_a_chat"] = rss(server.pid)
        wait_for(url, "asleep")
        time.sleep(0.5)  # the engine is freed on a thread of its own
        out["rss_mib"]["asleep"] = rss(server.pid)
        runs = []
        for n in range(args.runs):
            wait_for(url, "asleep")
            woke, load_ms = ttft(url, prompt(2 * n + 1, args.words))
            warm, _ = ttft(url, prompt(2 * n + 2, args.words))
            runs.append({"wake_ttft_s": woke, "load_ms": load_ms, "warm_ttft_s": warm})
        out["runs"] = runs
        out["median"] = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
        if args.cycles:
            out["cycles"] = cycles(url, server.pid, args.cycles, args.words)
        print(json.dumps(out, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=WAIT)
    return 0


def bench_model() -> Path:
    from edge.bench.models import bench_model as build  # the bench's own cached checkpoint
    from edge.config import Settings

    return build(
        Settings.load().home / "bench", "Q4_K_M", lambda line: print(line, file=sys.stderr)
    )


if __name__ == "__main__":
    raise SystemExit(main())
