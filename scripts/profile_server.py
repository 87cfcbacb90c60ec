"""Where the time goes inside `edge-qwen serve` while it streams: a py-spy profile.

    pip install py-spy
    python scripts/profile_server.py [MODEL.gguf] [--requests 4] [--tokens 128] [--ctx 4096]

Starts the server as the benchmark does and streams REQUESTS chat completions one after
another, twice: first bare, reading each server thread's CPU time from /proc (exact, no
profiler in the way: CPU milliseconds per generated token), then under py-spy (sampling,
from outside the process) to say which functions the samples fell in. Prints Markdown.
Default model: the benchmark's synthetic Q4_K_M (run `edge-qwen bench --quick` once first).
py-spy's own sampling costs some speed, so read shares from it, not tokens/s.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.bench import servers
from edge.config import Settings
from edge.plan import physical_cores


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = Settings().home / "bench" / "qwen3-0.6b-seed0-Q4_K_M.gguf"
    ap.add_argument("model", type=Path, nargs="?", default=default)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = ap.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    if not args.model.is_file():
        raise SystemExit(f"no model at {args.model}: run `edge-qwen bench --quick` once")

    work = Path(tempfile.mkdtemp(prefix="edge-profile-"))
    settings = servers.ServerSettings(args.model, physical_cores(), args.ctx, False)
    server = servers.start(servers.OURS, settings, work)
    raw = work / "profile.txt"
    try:
        before = thread_cpu(server.proc.pid)
        bare = [servers.stream_chat(server, servers.user(f"b{i}"), args.tokens)
                for i in range(args.requests)]  # fmt: skip
        after = thread_cpu(server.proc.pid)
        cpu_table(before, after, sum(r["tokens"] for r in bare), [r["decode_tps"] for r in bare])
        rec = subprocess.Popen(
            [spy, "record", "-p", str(server.proc.pid), "-o", str(raw), "-f", "raw",
             "-r", str(args.rate), "--threads", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches
        tps = [
            servers.stream_chat(server, servers.user(f"p{i}"), args.tokens)["decode_tps"]
            for i in range(args.requests)
        ]
        rec.send_signal(2)  # SIGINT: py-spy writes its file and exits
        rec.wait(timeout=60)
    finally:
        if "rec" in locals() and rec.poll() is None:
            rec.kill()
        server.stop()
    report(raw, tps)
    return 0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid`, by name: the main thread runs
    the event loop; the engine's scheduler names itself edge-engine (and with one thread
    llama.cpp computes on it); llama.cpp's other compute threads and AnyIO's are unnamed."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text(encoding="ascii")
        fields = stat[stat.rindex(")") + 2 :].split()
        comm = (task / "comm").read_text(encoding="utf-8", errors="replace").strip()
        label = "main (event loop, HTTP)" if task.name == str(pid) else f"{comm} {task.name}"
        out[label] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def cpu_table(
    before: dict[str, float], after: dict[str, float], tokens: int, tps: list[float]
) -> None:
    """CPU milliseconds per generated token of each thread, over the bare requests."""
    print(f"bare: {tokens} tokens, decode tok/s {', '.join(f'{t:.1f}' for t in tps)}\n")
    print("| thread | CPU ms per token |\n|---|---|")
    used = {n: (after[n] - before.get(n, 0.0)) * 1000 / tokens for n in after}
    for name, ms in sorted(used.items(), key=lambda kv: -kv[1]):
        if ms > 0:
            print(f"| {name} | {ms:.2f} |")
    print()


def report(raw: Path, tps: list[float]) -> None:
    """Print per-thread and per-function shares of py-spy's raw (collapsed) samples."""
    threads: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[tuple[str, str]] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        thread = frames[0].split(":")[-1].strip() or frames[0]
        threads[thread] += n
        leaves[(thread, frames[-1])] += n
    print(f"decode tok/s under the profiler: {', '.join(f'{t:.1f}' for t in tps)}")
    print(f"{total} samples (busy threads only)\n")
    print("| thread | share |\n|---|---|")
    for name, n in threads.most_common():
        print(f"| {name} | {n / total:.1%} |")
    print("\n| thread | function (innermost frame) | share |\n|---|---|---|")
    for (thread, frame), n in leaves.most_common(12):
        print(f"| {thread} | `{frame}` | {n / total:.1%} |")


if __name__ == "__main__":
    sys.exit(main())
