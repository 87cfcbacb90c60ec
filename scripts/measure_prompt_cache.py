"""An agent's long prompt against the prompt cache: edge-qwen and llama-server, each on its
defaults, side by side in one run.

    python scripts/measure_prompt_cache.py MODEL.gguf --threads 2 --out DIR [--prefix 6000]

An agent (Claude Code, Qwen Code, opencode, Codex CLI) sends one fixed prefix of system
prompt and tools with every request and a short question after it. Each server is started
as its README says (model, threads and context only; `edge.bench.servers`), with a third,
edge-qwen with its prompt cache off (`--cache-ram 0 --cache-disk 0`), for the decode
figure. edge-qwen's home is a fresh temporary folder, so its first request is cold. Then:

1. cold: the prefix and a first question (nothing cached anywhere);
2. warm: the same prefix, another question (the slot's own cells);
3. after others: four other long conversations (--other tokens each), then the prefix
   again (pushed out of the slots: llama-server's --cache-ram, our shelf or disk);
4. restart: every server stopped (SIGTERM) and started again (in the other order), then
   the prefix (edge-qwen without its cache reads it again, like llama-server);
5. wake (edge-qwen): a request with keep_alive 0 puts the model to sleep, then the prefix
   (the TTFT includes loading the model).

Every figure is the client's time to the first streamed token. Decode (tokens/s after the
first) is read after steps 3 and 4, with what each server has cached: --rounds answers of
--decode tokens after the prefix from each server, the order rotating, with the cache on
and off; the on/off ratio is the geometric mean of the two lives', since the servers start
in opposite orders (on this VM the first started decodes several percent slower). Prints
a Markdown table and writes DIR/prompt_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from edge.bench import reference, servers
from edge.bench.defaults import filler
from edge.bench.servers import LLAMA_SERVER, OURS, Server, ServerSettings

NO_CACHE = "edge-qwen serve (no prompt cache)"


def agent(prefix: str, q: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": prefix}, {"role": "user", "content": q}]


def start(name: str, s: ServerSettings, log_dir: Path, llama: Path) -> Server:
    if name != NO_CACHE:
        return servers.start(name, s, log_dir, llama, defaults=True)
    port = servers.free_port()
    argv = servers.defaults_command(OURS, s, port, None) + ["--cache-ram", "0", "--cache-disk", "0"]
    log = log_dir / f"no-cache-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    server = Server(name, proc, port, log, {"loop_guard": False})
    servers._wait_ready(server)  # noqa: SLF001  (the bench's own readiness check)
    return server


def ask(sv: Server, messages: list[dict[str, str]], tokens: int) -> dict[str, Any]:
    r = servers.stream_chat(sv, messages, tokens)
    return {k: r[k] for k in ("ttft_s", "decode_tps", "tokens", "prompt_tokens")}


def cached(sv: Server) -> dict[str, int]:
    """edge-qwen's shelf and disk tier, from /metrics."""
    if sv.name == LLAMA_SERVER:
        return {}
    text = httpx.get(f"{sv.url}/metrics", timeout=30).text
    keys = ("edge_shelf_bytes", "edge_prompt_cache_disk_bytes", "edge_prompt_cache_disk_hits")
    return {
        line.split()[0]: int(float(line.split()[1]))
        for line in text.splitlines()
        if line.startswith(keys)
    }


def sleep_now(sv: Server, prefix: str) -> None:
    """Put edge-qwen's model to sleep the Ollama way (keep_alive 0), wait until it is."""
    body = {"model": "m", "messages": agent(prefix, "Reply OK."), "max_tokens": 1, "keep_alive": 0}
    httpx.post(f"{sv.url}/v1/chat/completions", json=body, timeout=600)
    deadline = time.monotonic() + 120
    while httpx.get(f"{sv.url}/health", timeout=10).json().get("status") != "asleep":
        if time.monotonic() > deadline:
            raise RuntimeError("the model did not sleep")
        time.sleep(0.2)


def measure(args: argparse.Namespace, llama: Path) -> dict[str, Any]:
    s = ServerSettings(args.model, args.threads, args.ctx, False)
    prefix = filler("agent-tools", args.prefix)
    names = [OURS, LLAMA_SERVER, NO_CACHE]
    out: dict[str, Any] = {n: {} for n in names}
    decode: list[dict[str, list[float]]] = []  # per life: server → tok/s of each round

    def phase(label: str, running: list[Server], q: str, tokens: int = 8) -> None:
        for sv in running:
            r = ask(sv, agent(prefix, q), tokens)
            out[sv.name][label] = {**r, **cached(sv)}
            print(f"  {label:13} {sv.name:34} TTFT {r['ttft_s']:8.3f} s"
                  f"  prompt {r['prompt_tokens']}")  # fmt: skip

    running = [start(n, s, args.out, llama) for n in names]
    try:
        phase("cold", running, "Question 1: list the files.", args.answer)
        phase("warm", running, "Question 2: read the README.", args.answer)
        for i in range(args.others):
            for sv in running:
                ask(sv, [{"role": "user", "content": filler(f"other{i}", args.other)}], 8)
        phase("after others", running, "Question 3: run the tests.", args.answer)
        decode.append(decode_rounds(running, prefix, args))
    finally:
        for sv in running:
            sv.stop()
    # Started in the other order: on this VM the first server started decodes 7-10% slower
    # than the next, whatever its settings, so each decode ratio is read in both orders.
    running = [start(n, s, args.out, llama) for n in reversed(names)]
    try:
        phase("restart", running, "Question 4: fix the bug.", args.answer)
        decode.append(decode_rounds(running, prefix, args))
        ours = next(sv for sv in running if sv.name == OURS)
        sleep_now(ours, prefix)
        phase("wake", [ours], "Question 5: commit it.", args.answer)
    finally:
        for sv in running:
            sv.stop()
    out["decode_rounds"] = decode
    out["decode_tps"] = {n: statistics.median(v for life in decode for v in life[n]) for n in names}
    # the TTFT of those rounds: the same prefix, an agent's later questions
    out["later_ttft"] = {
        n: statistics.median(v for life in decode for v in life[f"{n} ttft"]) for n in names
    }
    out["decode_on_off"] = statistics.geometric_mean(
        statistics.median(life[OURS]) / statistics.median(life[NO_CACHE]) for life in decode
    )
    return out


def decode_rounds(running: list[Server], prefix: str, args: argparse.Namespace) -> dict:
    """Decode after the prefix with whatever each server has cached: a new question each
    round, the servers' order rotating; tok/s of each answer, by server."""
    got: dict[str, list[float]] = {sv.name: [] for sv in running}
    for r in range(args.rounds):
        k = r % len(running)
        for sv in running[k:] + running[:k]:
            answer = ask(sv, agent(prefix, f"Question d{r}: explain the code."), args.decode)
            got[sv.name].append(answer["decode_tps"])
            got.setdefault(f"{sv.name} ttft", []).append(answer["ttft_s"])
    return got


def table(got: dict[str, Any]) -> str:
    ours, ref = got[OURS], got[LLAMA_SERVER]
    cold = ours["cold"]["ttft_s"]
    rows = ["| case | edge-qwen TTFT | llama-server TTFT | ours / llama-server | ours / our cold |",
            "|---|---|---|---|---|"]  # fmt: skip
    for label in ("cold", "warm", "after others", "restart", "wake"):
        a = ours.get(label, {}).get("ttft_s")
        b = ref.get(label, {}).get("ttft_s")
        ratio = f"{a / b:.3f}" if a and b else "—"
        shown_b = f"{b:.3f} s" if b else "— (no sleep by default)"
        rows.append(f"| {label} | {a:.3f} s | {shown_b} | {ratio} | {a / cold:.3f} |")
    d = got["decode_tps"]
    lives = " and ".join(
        f"{statistics.median(life[OURS]) / statistics.median(life[NO_CACHE]):.3f}"
        for life in got["decode_rounds"]
    )
    t = got["later_ttft"]
    rows.append(
        f"| later questions (median) | {t[OURS]:.3f} s | {t[LLAMA_SERVER]:.3f} s |"
        f" {t[OURS] / t[LLAMA_SERVER]:.3f} | {t[OURS] / cold:.3f} |"
    )
    rows.append("")
    rows.append(
        f"Decode at the prefix's depth (median tok/s): edge-qwen {d[OURS]:.1f}, without its prompt"
        f" cache {d[NO_CACHE]:.1f}, llama-server {d[LLAMA_SERVER]:.1f}. Cache on/off:"
        f" {got['decode_on_off']:.3f} (geometric mean of {lives}, one per start order)."
    )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ctx", type=int, default=16384, help="the context every server is given")
    ap.add_argument("--prefix", type=int, default=6000, help="tokens of the agent's prefix")
    ap.add_argument("--others", type=int, default=4, help="other conversations in between")
    ap.add_argument("--other", type=int, default=1500, help="tokens of each other conversation")
    ap.add_argument("--answer", type=int, default=8, help="tokens of each timed answer")
    ap.add_argument("--decode", type=int, default=128, help="tokens of each decode round")
    ap.add_argument("--rounds", type=int, default=3, help="decode rounds per server")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # A cold prefix is minutes of prefill on a CPU, with no byte sent meanwhile by some.
    servers.TIMEOUT = httpx.Timeout(1800.0, connect=10.0)
    llama = reference.ensure(None, print).llama_server
    with tempfile.TemporaryDirectory(prefix="edge-qwen-home-") as home:
        os.environ["EDGE_QWEN_HOME"] = home  # a cold start: no prompt cache yet
        got = measure(args, llama)
    got["settings"] = {k: str(v) for k, v in vars(args).items()}
    (args.out / "prompt_cache.json").write_text(json.dumps(got, indent=1), encoding="utf-8")
    print(f"\n{args.model.name}, {args.threads} threads, prefix {args.prefix} tokens\n")
    print(table(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
