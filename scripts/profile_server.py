"""Where the time goes inside `edge-qwen serve` while it streams: a py-spy profile.

    pip install py-spy
    python scripts/profile_server.py [MODEL.gguf] [--requests 4] [--tokens 128] [--ctx 4096]
                                     [--threads N] [--clients N]

Starts the server as the benchmark does and streams REQUESTS chat completions, CLIENTS at a
time (the server gets --parallel CLIENTS), twice: first bare, reading each server thread's
CPU time from /proc (exact, no profiler in the way: CPU microseconds per generated token),
then under py-spy with native frames, to say which functions the samples fell in and how
much of each thread's time was inside llama.cpp (decoding, sampling) and how much was
Python. CPU per token times the Python share is the per-token cost of our own code.
Prints Markdown.

Default model: the benchmark's synthetic Q4_K_M (run `edge-qwen bench --quick` once first).
py-spy pauses the process for each sample (native stacks need that), which costs speed:
read shares from it, not tokens/s. To profile
another checkout's server (before/after), run this script with PYTHONPATH pointing at it.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.bench import servers
from edge.config import Settings
from edge.engine.plan import physical_cores


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
    ap.add_argument("--threads", type=int, default=physical_cores(), help="llama.cpp threads")
    ap.add_argument("--clients", type=int, default=1, help="concurrent streams")
    args = ap.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    if not args.model.is_file():
        raise SystemExit(f"no model at {args.model}: run `edge-qwen bench --quick` once")

    work = Path(tempfile.mkdtemp(prefix="edge-profile-"))
    settings = servers.ServerSettings(args.model, args.threads, args.ctx, False)
    server = servers.start(servers.OURS, settings, work, parallel=args.clients)
    raw = work / "profile.txt"
    print(
        f"model {args.model.name}, {args.threads} llama.cpp thread(s), {args.clients} "
        f"concurrent stream(s), {args.requests} x {args.tokens} tokens\n"
    )
    try:
        before = thread_cpu(server.proc.pid)
        bare = streams(server, "b", args)
        after = thread_cpu(server.proc.pid)
        tokens = sum(r["tokens"] for r in bare)
        used = cpu_table(before, after, tokens, [r["decode_tps"] for r in bare])
        rec = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(server.proc.pid),
                "-o",
                str(raw),
                "-f",
                "raw",
                "-r",
                str(args.rate),
                "--threads",
                "--native",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
        tps = [r["decode_tps"] for r in streams(server, "p", args)]
        rec.send_signal(2)  # SIGINT: py-spy writes its file and exits
        rec.wait(timeout=60)
    finally:
        if "rec" in locals() and rec.poll() is None:
            rec.kill()
        server.stop()
    report(raw, tps, used, server.proc.pid)
    return 0


def streams(server: servers.Server, tag: str, args: argparse.Namespace) -> list[dict]:
    """`args.requests` streamed completions, `args.clients` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> dict:
        return servers.stream_chat(server, servers.user(f"{tag}{i}"), args.tokens)

    with ThreadPoolExecutor(args.clients) as pool:
        return list(pool.map(one, range(args.requests)))


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
) -> dict[str, float]:
    """CPU microseconds per generated token of each thread, over the bare requests."""
    print(f"bare: {tokens} tokens, decode tok/s {', '.join(f'{t:.1f}' for t in tps)}\n")
    print("| thread | CPU µs per token |\n|---|---|")
    used = {n: (after[n] - before.get(n, 0.0)) * 1e6 / tokens for n in after}
    for name, us in sorted(used.items(), key=lambda kv: -kv[1]):
        if us > 0:
            print(f"| {name} | {us:.0f} |")
    print()
    return used


def native(frame: str) -> bool:
    """A frame of llama.cpp or ggml (py-spy --native names C functions without a .py file)."""
    return ".py" not in frame and ("llama" in frame or "ggml" in frame)


def report(raw: Path, tps: list[float], used: dict[str, float], pid: int) -> None:
    """Print per-thread and per-function shares of py-spy's raw (collapsed) samples, and
    each busy thread's CPU per token split into llama.cpp and Python."""
    threads: collections.Counter[str] = collections.Counter()
    in_llama: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[tuple[str, str]] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        thread = frames[0]  # "thread (TID): name", or "thread (TID)" for the main thread
        threads[thread] += n
        if any(native(f) for f in frames[1:]):
            in_llama[thread] += n
        leaves[(thread, frames[-1])] += n
    print(f"decode tok/s under the profiler: {', '.join(f'{t:.1f}' for t in tps)}")
    print(f"{total} samples (busy threads only)\n")
    print("| thread | share | in llama.cpp | CPU µs/token | of it Python |\n|---|---|---|---|---|")
    for name, n in threads.most_common():
        cpu = _cpu_of(name, used, pid)
        if not cpu:  # idle all along (py-spy's native mode samples waiting threads too)
            continue
        python = cpu * (1 - in_llama[name] / n)
        print(f"| {name} | {n / total:.1%} | {in_llama[name] / n:.0%} | {cpu:.0f} | {python:.0f} |")
    print("\n| thread | function (innermost frame) | share |\n|---|---|---|")
    for (thread, frame), n in leaves.most_common(16):
        print(f"| {thread} | `{frame}` | {n / total:.1%} |")


def _cpu_of(thread: str, used: dict[str, float], pid: int) -> float | None:
    """The /proc figure (keyed "comm TID", or "main …" for `pid`) of a py-spy thread label."""
    found = re.search(r"\((\d+)\)", thread)
    if found is None:
        return None
    tid = found.group(1)
    for label, us in used.items():
        if (label.startswith("main") and tid == str(pid)) or label.endswith(f" {tid}"):
            return us
    return None


if __name__ == "__main__":
    sys.exit(main())
