"""Time to first token and inter-token latency through `edge-qwen serve`, beside `edge-qwen run`.

    python scripts/bench_server.py MODEL.gguf [--tokens 128] [--rounds 5]

The server runs as its own process on 127.0.0.1; the client reads the SSE stream and
times each chunk as it arrives. `edge-qwen run --json` reports the same figures from
inside the process (a fresh process each time: its first token includes the cold start).
Greedy, thinking off, a prompt that differs in its first word each round (so no prompt
cache answers), rounds alternating. Use a
--bench-safe synthetic model so every chunk carries one token.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

QUESTION = "Write a long story about a lighthouse keeper and a storm."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "serve", "-m", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def one_request(port: int, tokens: int, tag: int) -> dict[str, float]:
    # A different first word each time: the server's prompt cache must not answer for us.
    content = f"({tag}) {QUESTION}"
    body = {"model": "q", "messages": [{"role": "user", "content": content}], "stream": True,
            "max_tokens": tokens, "temperature": 0, "enable_thinking": False, "loop_guard": False}  # fmt: skip
    stamps: list[float] = []
    start = time.perf_counter()
    with httpx.stream(
        "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"ttft_s": stamps[0] - start, "itl_p50_s": statistics.median(gaps),
            "itl_p95_s": statistics.quantiles(gaps, n=20)[-1], "decode_tps": len(gaps) / (stamps[-1] - stamps[0]),
            "chunks": len(stamps)}  # fmt: skip


def one_run(model: Path, tokens: int, tag: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", f"({tag}) {QUESTION}", "-m", str(model), "--json", "--no-think",
         "--temperature", "0", "--max-tokens", str(tokens), "--no-loop-guard"],
        capture_output=True, text=True, check=False,  # exit 3: stopped at --max-tokens, as intended
    )  # fmt: skip
    t = json.loads(out.stdout)["timings"]
    return {"ttft_s": t["ttft_s"], "decode_tps": t["decode_tps"]}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", type=Path)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    port = free_port()
    server = start_server(args.model, port)
    served, ran = [], []
    try:
        one_request(port, 8, -1)  # warm-up: the first request pays page faults of the mapped model
        for i in range(args.rounds):
            served.append(one_request(port, args.tokens, i))
            ran.append(one_run(args.model, args.tokens, i))
    finally:
        server.terminate()
        server.wait(timeout=30)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"{args.model.name}: {args.tokens} tokens, greedy, thinking off, median of {args.rounds}")
    print(
        "| path | TTFT ms | inter-token p50 ms | inter-token p95 ms | decode tok/s |\n|---|---|---|---|---|"
    )
    print(f"| edge-qwen serve (HTTP, SSE) | {med(served, 'ttft_s') * 1000:.0f} | {med(served, 'itl_p50_s') * 1000:.1f} "
          f"| {med(served, 'itl_p95_s') * 1000:.1f} | {med(served, 'decode_tps'):.2f} |")  # fmt: skip
    print(
        f"| edge-qwen run (in process) | {med(ran, 'ttft_s') * 1000:.0f} | – | – | {med(ran, 'decode_tps'):.2f} |"
    )
    print(
        f"\nchunks per request: {served[0]['chunks']:.0f} (one per token when every token is whole UTF-8)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
