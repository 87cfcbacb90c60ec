"""Figures 2–6: the three OpenAI-compatible servers measured through HTTP from a client.

Every server gets the same model file, thread count, context and flash-attention setting,
runs as its own process on 127.0.0.1, and gets byte-for-byte the same request (plus one
field of ours that turns off edge-qwen's loop guard: random weights repeat themselves,
and a guard that ends the answer early would shorten our measurement, not speed it up).
Greedy; the end-of-turn tokens are banned through `logit_bias`, so every answer runs to
max_tokens. Each prompt starts with a fresh tag, so no prompt cache answers for a server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edge.errors import BenchError

OURS = "edge-qwen serve"
LLAMA_SERVER = "llama-server"
PY_SERVER = "llama_cpp.server"

QUESTION = "Write a long story about a lighthouse keeper and a storm."
BANNED = {"151645": -100, "151643": -100}  # <|im_end|>, <|endoftext|>
TURNS = [
    "I am planning a small vegetable garden on a balcony that gets about five hours of sun. "
    "Which vegetables would you start with, and how deep should the containers be?",
    "Good. How often should I water them in summer, and does the kind of pot change that?",
    "What about fertiliser: organic or mineral, and how much for containers this size?",
    "Some leaves are turning yellow at the edges. What are the likely causes?",
    "How do I keep aphids away without spraying anything toxic near the kitchen?",
    "Finally, which of these plants can stay outside over a mild winter?",
]
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@dataclass(frozen=True)
class ServerSettings:
    """What every server is started with alike."""

    model: Path
    threads: int
    ctx: int
    flash_attn: bool


@dataclass
class Server:
    """One running server process."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)  # request fields only this server knows

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss(self) -> int | None:
        """The process's peak resident set (VmHWM, Linux), read while it still runs, with
        its children's (`serve --supervise`, the default with a GPU, serves from one)."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
                pids = [pid, *map(int, f.read().split())]
        except OSError:
            return None
        total = 0
        for one in pids:
            try:
                with open(f"/proc/{one}/status", encoding="ascii") as f:
                    total += next(
                        int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")
                    )
            except (OSError, StopIteration):
                continue
        return total or None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def shelf_peak(server: Server) -> int | None:
    """The most RAM edge-qwen's shelf has held (`edge_shelf_peak_bytes` on /metrics): its
    finished conversations' KV, which its peak RSS includes by design. None for others."""
    if server.name != OURS:
        return None
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("edge_shelf_peak_bytes "):
            return int(line.split()[1])
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(
    name: str, s: ServerSettings, port: int, llama_server: Path | None, parallel: int = 1
) -> list[str]:
    """The command line that starts `name` with the shared settings."""
    t, c, fa = str(s.threads), str(s.ctx), s.flash_attn
    if name == OURS:
        head = [sys.executable, "-m", "edge.cli", "serve", "-m", str(s.model)]
        flags = {"--port": port, "--ctx": c, "--threads": t, "--parallel": parallel}
        return [*head, *_pairs(flags), "--flash-attn" if fa else "--no-flash-attn"]
    if name == LLAMA_SERVER:
        assert llama_server is not None
        flags = {
            "-m": s.model,
            "--host": "127.0.0.1",
            "--port": port,
            "-c": c,
            "-t": t,
            "-tb": t,
            "-fa": "on" if fa else "off",
            "-np": parallel,
        }
        return [str(llama_server), *_pairs(flags), "--jinja", "--no-webui"]
    if name == PY_SERVER:
        head = [sys.executable, "-m", "llama_cpp.server"]
        flags = {
            "--model": s.model,
            "--host": "127.0.0.1",
            "--port": port,
            "--n_ctx": c,
            "--n_threads": t,
            "--n_threads_batch": t,
            "--n_batch": 512,
            "--flash_attn": fa,
        }
        return [*head, *_pairs(flags)]
    raise ValueError(name)


def defaults_command(
    name: str, s: ServerSettings, port: int, llama_server: Path | None
) -> list[str]:
    """`name` started as its README says: only model, threads and context given (plus
    where to listen, and llama-server's --jinja and --no-webui, which change no speed).
    Flash attention, slots, batch sizes and caches are each server's own defaults."""
    t, c = str(s.threads), str(s.ctx)
    if name == OURS:
        head = [sys.executable, "-m", "edge.cli", "serve", "-m", str(s.model)]
        return [*head, *_pairs({"--port": port, "--threads": t, "--ctx": c})]
    if name == LLAMA_SERVER:
        assert llama_server is not None
        flags = {"-m": s.model, "--host": "127.0.0.1", "--port": port, "-t": t, "-c": c}
        return [str(llama_server), *_pairs(flags), "--jinja", "--no-webui"]
    if name == PY_SERVER:
        head = [sys.executable, "-m", "llama_cpp.server"]
        flags = {"--model": s.model, "--host": "127.0.0.1", "--port": port}
        return [*head, *_pairs({**flags, "--n_threads": t, "--n_ctx": c})]
    raise ValueError(name)


def _pairs(flags: dict[str, object]) -> list[str]:
    """`{"--port": 8000}` → `["--port", "8000"]`."""
    return [part for flag, value in flags.items() for part in (flag, str(value))]


def start(
    name: str,
    s: ServerSettings,
    log_dir: Path,
    llama_server: Path | None = None,
    parallel: int = 1,
    defaults: bool = False,
) -> Server:
    """Start a server and wait until it answers a one-token request (model loaded, pages in).

    `defaults`: started by `defaults_command` (s.flash_attn and `parallel` unused)."""
    port = free_port()
    log = log_dir / f"{name.replace(' ', '-')}-{port}.log"
    env = {**(_plain_env(os.environ) if defaults else os.environ), "EDGE_QWEN_API_KEY": ""}
    if defaults:
        argv = defaults_command(name, s, port, llama_server)
    else:
        argv = command(name, s, port, llama_server, parallel)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(name, proc, port, log, {"loop_guard": False} if name == OURS else {})
    try:
        _wait_ready(server)
    except BaseException:  # Ctrl-C included: never leave a server running behind us
        server.stop()
        raise
    return server


def _plain_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment without the settings a server reads from it (EDGE_QWEN_PARALLEL,
    LLAMA_ARG_N_PARALLEL…), so that a defaults start gets the defaults."""
    keep = ("EDGE_QWEN_HOME",)
    return {
        k: v for k, v in env.items() if k in keep or not k.startswith(("EDGE_QWEN_", "LLAMA_ARG_"))
    }


def _wait_ready(server: Server, limit: float = 180) -> None:
    """Ready = it answers a chat request (some servers list models before loading one)."""
    deadline = time.monotonic() + limit
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode}; see {server.log}"
            )
        try:
            stream_chat(server, [{"role": "user", "content": "warm-up"}], 2)
            return
        except (httpx.HTTPError, BenchError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise BenchError(
        f"{server.name} did not become ready in {limit:.0f} s ({last}); see {server.log}"
    )


def _body(server: Server, messages: list[dict[str, str]], max_tokens: int, stream: bool) -> dict:
    body: dict[str, Any] = {
        "model": "bench",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "logit_bias": BANNED,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return {**body, **server.extra}


def stream_chat(server: Server, messages: list[dict[str, str]], max_tokens: int) -> dict:
    """One streamed chat completion, timed chunk by chunk as the client receives it."""
    stamps: list[float] = []
    text: list[str] = []
    usage: dict[str, Any] = {}
    start = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=_body(server, messages, max_tokens, True),
        timeout=TIMEOUT,
    ) as r:
        if r.status_code != 200:
            raise BenchError(f"{server.name} answered {r.status_code}: {r.read()[:300]!r}")
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                piece = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
                if piece:
                    stamps.append(time.perf_counter())
                    text.append(piece)
    end = time.perf_counter()
    if not stamps:
        raise BenchError(f"{server.name} streamed no text")
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    tokens = int(usage.get("completion_tokens") or len(stamps))
    span = stamps[-1] - stamps[0]
    return {
        "ttft_s": stamps[0] - start,
        "itl_s": gaps,
        "total_s": end - start,
        "tokens": tokens,
        "prompt_tokens": usage.get("prompt_tokens"),  # None where a server sends no usage
        "chunks": len(stamps),
        "decode_tps": (len(stamps) - 1) / span if span > 0 else 0.0,
        "text": "".join(text),
    }


def plain_chat(server: Server, messages: list[dict[str, str]], max_tokens: int) -> dict:
    """The same request without streaming: the first visible text is the whole answer."""
    start = time.perf_counter()
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json=_body(server, messages, max_tokens, False),
        timeout=TIMEOUT,
    )
    total = time.perf_counter() - start
    if r.status_code != 200:
        raise BenchError(f"{server.name} answered {r.status_code}: {r.text[:300]}")
    tokens = int(r.json()["usage"]["completion_tokens"])
    return {"first_visible_s": total, "total_s": total, "tokens": tokens}


def user(tag: str, text: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"({tag}) {text}"}]


def multiturn(server: Server, tag: str, turns: int, max_tokens: int) -> list[float]:
    """TTFT of each turn of one conversation that resends its whole history every turn."""
    messages = [{"role": "system", "content": f"({tag}) You are a concise gardening assistant."}]
    ttfts = []
    for question in TURNS[:turns]:
        messages.append({"role": "user", "content": question})
        result = stream_chat(server, messages, max_tokens)
        ttfts.append(result["ttft_s"])
        messages.append({"role": "assistant", "content": result["text"]})
    return ttfts


def concurrent(server: Server, tag: str, clients: int, max_tokens: int) -> dict:
    """`clients` streamed requests released at once; aggregate tokens/s over the wall time."""
    results: list[dict | None] = [None] * clients
    errors: list[str] = []
    barrier = threading.Barrier(clients)

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = stream_chat(server, user(f"{tag}-{i}"), max_tokens)
        except (httpx.HTTPError, BenchError, threading.BrokenBarrierError) as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - start
    done = [r for r in results if r is not None]
    tokens = sum(r["tokens"] for r in done)
    # Each client's own rate, request sent to last token: a client kept waiting shows here.
    rates = [r["tokens"] / r["total_s"] for r in done if r["total_s"] > 0]
    return {
        "aggregate_tps": tokens / wall,
        "ttft_s": [r["ttft_s"] for r in done],
        "client_tps": rates,
        "errors": clients - len(done),
        "requests": clients,
        "wall_s": wall,
        "tokens": tokens,
        "error_messages": errors[:3],
    }


def interleaved(servers: list[Server], rounds: int, fn: Callable[[Server, int], Any]) -> dict:
    """fn(server, round) for every server each round, the order rotating so that drift of
    the machine (heat, other load) falls on every server alike."""
    out: dict[str, list[Any]] = {s.name: [] for s in servers}
    for r in range(rounds):
        k = r % len(servers)
        for server in servers[k:] + servers[:k]:
            out[server.name].append(fn(server, r))
    return out
