"""What `serve --supervise` costs on the token path: nothing is meant to pass through its
parent, so decode speed and time to first token should equal the plain server's.

    python scripts/measure_supervised.py [--shape gpu-proxy --shape 0.6b] [--rounds 5]

For each shape (the bench's synthetic checkpoints, Q4_K_M, one llama.cpp thread: the
simulated GPU regime), three servers run side by side on the same file: edge-qwen serve
in-process (--no-supervise), edge-qwen serve --supervise (its child on the inherited
socket), and upstream llama-server built from the source llama-cpp-python vendors (as
`edge-qwen bench` builds it). Each round streams one chat of --tokens tokens from each,
in rotating order; printed: the medians, and each figure as a ratio to llama-server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.bench import reference
from edge.bench.models import bench_model
from edge.bench.servers import LLAMA_SERVER, Server, free_port, interleaved, stream_chat, user
from edge.config import Settings

WAIT = 180.0


def launch(name: str, argv: list[str], port: int, logs: Path) -> Server:
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, proc, port, log, {"loop_guard": False} if "edge" in name else {})
    deadline = time.monotonic() + WAIT
    while True:
        try:
            stream_chat(server, user("warm-up"), 2)
            return server
        except Exception:  # not up yet (connection refused, 503 while loading)
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {log}") from None
            time.sleep(0.5)


def servers_for(model: Path, threads: int, ctx: int, llama: Path, logs: Path) -> list[Server]:
    ours = [sys.executable, "-m", "edge.cli", "serve", "-m", str(model), "--threads", str(threads)]
    ours += ["--ctx", str(ctx), "--parallel", "1"]
    out = []
    port = free_port()
    out.append(launch("edge-qwen", [*ours, "--port", str(port), "--no-supervise"], port, logs))
    port = free_port()
    supervised = [*ours, "--port", str(port), "--supervise", "--idle", "1h"]
    out.append(launch("edge-qwen --supervise", supervised, port, logs))
    port = free_port()
    flags = ["-m", str(model), "--port", str(port), "-t", str(threads), "-tb", str(threads)]
    flags += ["-c", str(ctx), "-np", "1", "--jinja", "--no-webui"]
    out.append(launch(LLAMA_SERVER, [str(llama), *flags], port, logs))
    return out


def measure(shape: str, args: argparse.Namespace, llama: Path, logs: Path) -> dict[str, Any]:
    home = Settings.load().home
    model = bench_model(home / "bench", "Q4_K_M", lambda line: print(line, file=sys.stderr), shape)
    running = servers_for(model, args.threads, args.ctx, llama, logs)
    try:

        def one(server: Server, n: int) -> dict[str, Any]:
            return stream_chat(server, user(f"round-{n}-{shape}"), args.tokens)

        runs = interleaved(running, args.rounds, one)
    finally:
        for server in running:
            server.stop()
    table: dict[str, Any] = {}
    for name, rs in runs.items():
        table[name] = {
            "decode_tps": statistics.median(r["decode_tps"] for r in rs),
            "ttft_ms": 1000 * statistics.median(r["ttft_s"] for r in rs),
            "itl_p50_ms": 1000 * statistics.median(g for r in rs for g in r["itl_s"]),
        }
    ref = table[LLAMA_SERVER]
    for row in table.values():
        row["decode_vs_llama_server"] = row["decode_tps"] / ref["decode_tps"]
        row["ttft_vs_llama_server"] = row["ttft_ms"] / ref["ttft_ms"]
    return {"shape": shape, "model": model.name, "servers": table}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shape", action="append", help="gpu-proxy, 0.6b (default: both)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=4096)
    args = ap.parse_args()
    found = reference.find()
    if found is None:
        raise SystemExit("No reference llama-server: run `edge-qwen bench` once to build it.")
    with tempfile.TemporaryDirectory() as logs:
        out = [
            measure(shape, args, found.llama_server, Path(logs))
            for shape in args.shape or ["gpu-proxy", "0.6b"]
        ]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
