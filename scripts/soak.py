"""Soak test: many mixed requests against one real `edge-qwen serve`, watching for leaks.

One server process on 127.0.0.1 (a tiny synthetic model that never stops by itself, so
`max_tokens` sets every answer's length) gets N requests, `--concurrency` at a time:
streamed and non-streamed chat, text completions, Anthropic Messages and OpenAI Responses,
requests with logprobs, and streams the client drops after a few chunks. Afterwards it
reports, as JSON and Markdown:

- every status code, client- and server-side (zero 5xx expected), and malformed streams;
- the server's RSS, open file descriptors and threads after request `--mark` (100) and at
  the end, each read from /proc once the server is idle and the clients' connections are
  closed, so the two readings compare like with like (RSS growth < 5%, fds and threads
  unchanged);
- the tokens the server generated against the most the finished requests could have
  asked for: a dropped stream whose generation went on would show up there.

    python scripts/soak.py                       # 1,000 requests (a few minutes on 2 cores)
    python scripts/soak.py --requests 300 --json soak.json --markdown soak.md

Importable: `run_soak(model, requests=...)` returns the same report (tests/live/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = (
    "stream_chat",
    "chat",
    "dropped_stream",
    "stream_completion",
    "completion",
    "stream_messages",  # Anthropic's Messages API
    "messages",
    "stream_responses",  # OpenAI's Responses API
    "responses",
    "logprobs",  # chat with logprobs, and text with echo and logprobs
    "stream_ollama_chat",  # Ollama's API: NDJSON lines, not SSE
    "ollama_generate",
)
OLLAMA_NAME = "qwen3:0.6b"  # Ollama's API answers only to names it lists (any model: "soak")
STARTUP_LIMIT = 120.0  # seconds for the server to load the model and answer /health
REQUEST_LIMIT = 60.0  # seconds for any one request
SETTLE_LIMIT = 15.0  # seconds for the server to go idle and close connections after a phase
RSS_GROWTH_LIMIT = 0.05
# Threads may differ by this much between two idle readings: AnyIO's worker threads (which
# Starlette uses) come and go with load. py-spy named every difference seen; idle readings
# of a 1,000-request run ranged 14-18. The pool is capped at 40 and prunes idle threads;
# a leak grows with requests instead (300 requests would add dozens).
THREAD_SLACK = 4
# A model stuck in a loop ("Hello world Hello world …"): answers end only at max_tokens.
LOOPING_SCRIPT = [["\n", "<think>", "Let", " me", "Let"], ["\n\n", "Hello", " world", "Hello"]]


@dataclass
class Probe:
    """The server process as /proc shows it."""

    rss_kib: int
    hwm_kib: int
    fds: int
    threads: int


@dataclass
class Outcome:
    """One request, as the client saw it."""

    kind: str
    status: int | None  # None: no HTTP answer (connection refused, reset, timed out)
    error: str | None  # why the request is counted as bad, None when it is fine
    chunks: int = 0
    seconds: float = 0.0


@dataclass
class Report:
    """What `run_soak` measured; `problems` lists every property that did not hold."""

    requests: int
    concurrency: int
    parallel: int
    mark: int
    seconds: float
    kinds: dict[str, int]
    client_statuses: dict[str, int]
    server_statuses: dict[str, int]
    bad: list[str]
    at_mark: Probe
    at_end: Probe
    rss_growth: float
    generated_tokens: int
    max_possible_tokens: int
    # (requests done, RSS KiB, fds, threads), each read with the server idle
    trace: list[tuple[int, int, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_markdown(self) -> str:
        a, b = self.at_mark, self.at_end
        rows = [
            (
                "RSS (MiB)",
                f"{a.rss_kib / 1024:.1f}",
                f"{b.rss_kib / 1024:.1f}",
                f"{self.rss_growth * 100:+.2f}% (limit +{RSS_GROWTH_LIMIT * 100:.0f}%)",
            ),
            ("peak RSS, VmHWM (MiB)", f"{a.hwm_kib / 1024:.1f}", f"{b.hwm_kib / 1024:.1f}", ""),
            ("open fds", str(a.fds), str(b.fds), f"{b.fds - a.fds:+d} (limit 0)"),
            (
                "threads",
                str(a.threads),
                str(b.threads),
                f"{b.threads - a.threads:+d} (limit +{THREAD_SLACK}: AnyIO's pool)",
            ),
        ]
        lines = [
            f"Soak: {self.requests} requests, {self.concurrency} at a time, server --parallel "
            f"{self.parallel}, {self.seconds:.1f} s ({self.requests / self.seconds:.1f} req/s).",
            "",
            f"| server | after request {self.mark} | at the end | change |",
            "|---|---|---|---|",
            *(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows),
            "",
            f"- requests by kind: {_fmt(self.kinds)}",
            f"- statuses seen by clients: {_fmt(self.client_statuses)}; "
            f"counted by the server: {_fmt(self.server_statuses)}",
            f"- tokens generated: {self.generated_tokens} "
            f"(at most {self.max_possible_tokens} if dropped streams stopped at once)",
            "- idle readings (requests done: RSS MiB / fds / threads): "
            + ", ".join(f"{n}: {k / 1024:.1f}/{f}/{t}" for n, k, f, t in self.trace),
            f"- bad requests: {len(self.bad)}",
            f"- verdict: {'PASS' if not self.problems else 'FAIL: ' + '; '.join(self.problems)}",
        ]
        return "\n".join(lines) + "\n"


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


# -- the server ------------------------------------------------------------------------


def probe(pid: int) -> Probe:
    """RSS, peak RSS, open fds and threads of process `pid`, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()

    def field_of(name: str) -> int:
        match = re.search(rf"^{name}:\s+(\d+)", status, re.M)
        assert match, f"no {name} in /proc/{pid}/status"
        return int(match.group(1))

    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Probe(field_of("VmRSS"), field_of("VmHWM"), fds, field_of("Threads"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(home: Path) -> dict[str, str]:
    """This environment without our settings or the hub's, with its own edge-qwen home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_QWEN_", "HF_"))}
    env.update(EDGE_QWEN_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def start_serve(
    model: Path,
    port: int,
    parallel: int,
    ctx: int,
    env: dict[str, str],
    log: Path,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """`edge-qwen serve` on 127.0.0.1:`port`, its output appended to `log`; not yet ready."""
    args = ["serve", "-m", str(model), "--port", str(port)]
    args += ["--parallel", str(parallel), "--ctx", str(ctx), *extra]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli", *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def server(
    model: Path, parallel: int, ctx: int, home: Path, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`edge-qwen serve` as a real process on 127.0.0.1; yields (URL, process), then stops it."""
    port = free_port()
    proc = start_serve(model, port, parallel, ctx, isolated_env(home), home / "server.log", extra)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def wait_ready(url: str, proc: subprocess.Popen[bytes], limit: float = STARTUP_LIMIT) -> None:
    """Poll /health until it answers 200, the process exits, or `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {limit:.0f} s")


def server_metrics(url: str) -> dict[str, float]:
    """The /metrics lines as numbers, by their full name (labels included)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def settle(url: str, pid: int, limit: float = SETTLE_LIMIT) -> Probe:
    """Wait until the server has nothing in flight, then until its fds and threads have
    held still for a second (closed connections take a moment to be noticed); probe it."""
    deadline = time.monotonic() + limit
    while True:  # asked over HTTP first: the asking connection must be gone before counting
        m = server_metrics(url)
        if not m.get("edge_in_flight", 0) + m.get("edge_queue_depth", 0):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server still had requests in flight after {limit:.0f} s")
        time.sleep(0.2)
    last, steady_since = probe(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = probe(pid)
        if (now.fds, now.threads) != (last.fds, last.threads):
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= 1.0:
            return now
    raise RuntimeError(f"the server's fds or threads did not hold still within {limit:.0f} s")


# -- the clients -----------------------------------------------------------------------


def _messages(i: int) -> list[dict[str, str]]:
    # Some requests share a system prompt (prefix reuse), some continue a conversation.
    system = {"role": "system", "content": f"You are helper number {i % 3}."}
    user = {"role": "user", "content": f"Question {i}: " + "tell me more " * (i % 7)}
    if i % 4 == 0:
        return [system, user, {"role": "assistant", "content": "Hello world"}, user]
    return [system, user]


def plan_request(i: int) -> tuple[str, str, dict[str, Any]]:
    """The i-th request: (kind, path, JSON body). Answers are 4-24 tokens long; a dropped
    stream asks for 1,000 so that only cancelling it can end it early."""
    kind = KINDS[i % len(KINDS)]
    tokens = 4 + (i * 7) % 21
    thinking = i % 2 == 0
    chat = {
        "model": "soak",
        "messages": _messages(i),
        "max_tokens": tokens,
        "loop_guard": False,
        "chat_template_kwargs": {"enable_thinking": thinking},
    }
    text = {"model": "soak", "prompt": f"Once upon a time {i}", "max_tokens": tokens}
    system, *turns = _messages(i)
    plans: dict[str, tuple[str, dict[str, Any]]] = {
        "stream_chat": ("/v1/chat/completions", {**chat, "stream": True}),
        "chat": ("/v1/chat/completions", chat),
        "dropped_stream": (
            "/v1/chat/completions",
            {**chat, "stream": True, "max_tokens": 1000},
        ),
        "stream_completion": ("/v1/completions", {**text, "stream": True}),
        "completion": ("/v1/completions", text),
        "messages": (
            "/v1/messages",
            {
                "model": "soak",
                "system": system["content"],
                "messages": turns,
                "max_tokens": tokens,
                "thinking": {"type": "enabled", "budget_tokens": 8}
                if thinking
                else {"type": "disabled"},
            },
        ),
        "responses": (
            "/v1/responses",
            {
                "model": "soak",
                "instructions": system["content"],
                "input": turns,
                "max_output_tokens": tokens,
                "reasoning": {"effort": "low" if thinking else "none"},
                "store": i % 3 == 0,
            },
        ),
        "logprobs": (
            ("/v1/chat/completions", {**chat, "logprobs": True, "top_logprobs": 3})
            if thinking
            else ("/v1/completions", {**text, "logprobs": 2, "echo": True})
        ),
    }
    options = {"num_predict": tokens}
    plans["stream_ollama_chat"] = (
        "/api/chat",
        {"model": OLLAMA_NAME, "messages": _messages(i), "think": thinking, "options": options},
    )
    plans["ollama_generate"] = (
        "/api/generate",
        {"model": OLLAMA_NAME, "prompt": text["prompt"], "stream": False, "options": options},
    )
    plans["stream_messages"] = (plans["messages"][0], {**plans["messages"][1], "stream": True})
    plans["stream_responses"] = (plans["responses"][0], {**plans["responses"][1], "stream": True})
    path, body = plans[kind]
    return kind, path, body


def asked_tokens(body: dict[str, Any]) -> int:
    """The most tokens a request may generate, in whichever API's field."""
    ollama = body.get("options", {}).get("num_predict")
    return int(body.get("max_tokens") or body.get("max_output_tokens") or ollama or 0)


def streamed(path: str, body: dict[str, Any]) -> bool:
    """Whether the request streams: Ollama's API streams unless told not to."""
    return bool(body.get("stream", path.startswith("/api/")))


async def one_request(client: httpx.AsyncClient, i: int, drop_after: int = 3) -> Outcome:
    """Send the i-th request and check its answer's shape."""
    kind, path, body = plan_request(i)
    start = time.monotonic()
    out = Outcome(kind, None, None)
    try:
        if not streamed(path, body):
            r = await client.post(path, json=body)
            out.status = r.status_code
            if r.status_code == 200:
                reason = finish_reason(r.json())
                if reason not in ("stop", "length"):
                    out.error = f"finish reason {reason!r}"
            else:
                out.error = f"HTTP {r.status_code}: {r.text[:200]}"
        else:
            async with client.stream("POST", path, json=body) as r:
                out.status = r.status_code
                if r.status_code != 200:
                    out.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                else:
                    out.chunks, out.error = await _read_stream(r, kind, drop_after)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.monotonic() - start
    return out


def finish_reason(body: dict[str, Any]) -> str | None:
    """An answer's end in chat's terms, whichever API gave it: "stop" or "length"."""
    if "done_reason" in body:  # Ollama
        return str(body["done_reason"])
    if body.get("type") == "message":  # Anthropic
        return {"end_turn": "stop", "max_tokens": "length"}.get(body.get("stop_reason") or "")
    if body.get("object") == "response":  # Responses
        return {"completed": "stop", "incomplete": "length"}.get(body.get("status") or "")
    reasons = [c.get("finish_reason") for c in body.get("choices", [])]
    return reasons[0] if reasons else None


# The event that ends a stream of each API with names for its events, and its finish.
NAMED_ENDS = {"message_stop", "response.completed", "response.incomplete"}
NAMED_ERRORS = {"error", "response.failed"}


def stream_reasons(payload: dict[str, Any]) -> list[str | None]:
    """The finish reasons one streamed event gives, in chat's terms."""
    kind = payload.get("type")
    if kind == "message_delta":
        return [finish_reason({"type": "message", **payload["delta"]})]
    if kind in ("response.completed", "response.incomplete"):
        return [finish_reason(payload["response"])]
    return [c.get("finish_reason") for c in payload.get("choices", [])]


async def _read_stream(r: httpx.Response, kind: str, drop_after: int) -> tuple[int, str | None]:
    """Read SSE `data:` lines (or Ollama's NDJSON); a dropped stream leaves after
    `drop_after` of them. Otherwise the stream must end as its API ends one (a finish
    reason then [DONE], `message_stop`, `response.completed`/`.incomplete`, a `done`
    line) and carry no in-band error."""
    if r.headers.get("content-type", "").startswith("application/x-ndjson"):
        return await _read_ndjson(r)
    chunks, reasons, done = 0, [], False
    async for line in r.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == "[DONE]":
            done = True
            break
        payload = json.loads(data)
        if "error" in payload or payload.get("type") in NAMED_ERRORS:
            return chunks, f"in-band error: {payload}"
        chunks += 1
        reasons += stream_reasons(payload)
        if payload.get("type") in NAMED_ENDS:
            done = True
            break
        if kind == "dropped_stream" and chunks >= drop_after:
            return chunks, None  # leaving the `async with` closes the connection
    if kind == "dropped_stream":
        return chunks, "the stream ended before the client dropped it"
    finished = [x for x in reasons if x]
    if not done or finished not in (["stop"], ["length"]):
        return chunks, f"malformed stream: end {done}, finish reasons {finished}"
    return chunks, None


async def _read_ndjson(r: httpx.Response) -> tuple[int, str | None]:
    """Ollama's stream: a JSON object a line, the last with `done` and its `done_reason`."""
    chunks = 0
    async for line in r.aiter_lines():
        if not line:
            continue
        payload = json.loads(line)
        if "error" in payload:
            return chunks, f"in-band error: {payload}"
        chunks += 1
        if payload.get("done"):
            reason = finish_reason(payload)
            return chunks, None if reason in ("stop", "length") else f"done_reason {reason!r}"
    return chunks, "malformed stream: no done line"


async def run_phase(url: str, indices: range, concurrency: int, pid: int) -> list[Outcome]:
    """Requests `indices`, at most `concurrency` at a time, on one client whose
    connections are all closed when the phase ends. Samples RSS every 50 answers."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(REQUEST_LIMIT)
    gate = asyncio.Semaphore(concurrency)
    results: list[Outcome] = []

    async def bounded(client: httpx.AsyncClient, i: int) -> None:
        async with gate:
            results.append(await one_request(client, i))

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        await asyncio.gather(*(bounded(client, i) for i in indices))
    return results


def run_soak(
    model: Path,
    requests: int = 1000,
    concurrency: int = 6,
    parallel: int = 4,
    mark: int = 100,
    ctx: int = 4096,
    home: Path | None = None,
) -> Report:
    """Start one server, send `requests` mixed requests, measure it after `mark` requests
    and at the end; the Report's `problems` is empty when every property held."""
    assert 0 < mark < requests, "the mark must fall inside the run"
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as tmp:
        home = home or Path(tmp)
        with server(model, parallel, ctx, home) as (url, proc):
            before = server_metrics(url)  # the 503s /health gave while the model loaded
            start = time.monotonic()
            outcomes = asyncio.run(run_phase(url, range(mark), concurrency, proc.pid))
            at_mark = settle(url, proc.pid)
            trace = [(mark, at_mark.rss_kib, at_mark.fds, at_mark.threads)]
            step = max(mark, (requests - mark) // 8)
            for lo in range(mark, requests, step):
                hi = min(requests, lo + step)
                outcomes += asyncio.run(run_phase(url, range(lo, hi), concurrency, proc.pid))
                at_end = settle(url, proc.pid)
                trace.append((hi, at_end.rss_kib, at_end.fds, at_end.threads))
            seconds = time.monotonic() - start
            metrics = server_metrics(url)
    for name, value in before.items():
        if name.startswith("edge_requests_total"):
            metrics[name] = metrics.get(name, 0) - value
    return _report(
        outcomes,
        metrics,
        at_mark,
        at_end,
        trace,
        seconds,
        concurrency=concurrency,
        parallel=parallel,
        mark=mark,
    )


def _report(
    outcomes: list[Outcome],
    metrics: dict[str, float],
    at_mark: Probe,
    at_end: Probe,
    trace: list[tuple[int, int, int, int]],
    seconds: float,
    *,
    concurrency: int,
    parallel: int,
    mark: int,
) -> Report:
    client_statuses = Counter(str(o.status) if o.status else "no answer" for o in outcomes)
    server_statuses: Counter[str] = Counter()
    for k, v in metrics.items():
        if (m := re.fullmatch(r'edge_requests_total\{api="\w+",status="(\d+)"\}', k)) and v:
            server_statuses[m.group(1)] += int(v)
    max_tokens = sum(
        asked_tokens(plan_request(i)[2])
        for i in range(len(outcomes))
        if plan_request(i)[0] != "dropped_stream"
    )
    drops = sum(o.kind == "dropped_stream" for o in outcomes)
    # A dropped stream is cancelled within a step or two of the client leaving; allow it
    # its chunks read plus a few tokens in flight, far below the 1,000 it asked for.
    max_tokens += sum(o.chunks for o in outcomes if o.kind == "dropped_stream") + 8 * drops
    report = Report(
        requests=len(outcomes),
        seconds=seconds,
        kinds=dict(Counter(o.kind for o in outcomes)),
        client_statuses=dict(client_statuses),
        server_statuses=dict(server_statuses),
        bad=[f"#{i} {o.kind}: {o.error}" for i, o in enumerate(outcomes) if o.error],
        at_mark=at_mark,
        at_end=at_end,
        rss_growth=at_end.rss_kib / at_mark.rss_kib - 1,
        generated_tokens=int(metrics.get("edge_generated_tokens_total", -1)),
        max_possible_tokens=max_tokens,
        trace=trace,
        concurrency=concurrency,
        parallel=parallel,
        mark=mark,
    )
    report.problems = _problems(report)
    return report


def _problems(r: Report) -> list[str]:
    problems = []
    fives = {s: n for s, n in {**r.client_statuses, **r.server_statuses}.items() if s[0] == "5"}
    if fives:
        problems.append(f"5xx answers: {fives}")
    if r.bad:
        problems.append(f"{len(r.bad)} bad requests, first: {r.bad[0]}")
    if r.rss_growth >= RSS_GROWTH_LIMIT:
        problems.append(f"RSS grew {r.rss_growth * 100:.1f}% after request {r.mark}")
    fds = max([r.at_end.fds] + [t[2] for t in r.trace])
    if fds > r.at_mark.fds:
        problems.append(f"open fds grew {r.at_mark.fds} -> {fds}")
    threads = max([r.at_end.threads] + [t[3] for t in r.trace])
    if threads > r.at_mark.threads + THREAD_SLACK:
        problems.append(f"threads grew {r.at_mark.threads} -> {threads}")
    if not 0 <= r.generated_tokens <= r.max_possible_tokens:
        problems.append(
            f"{r.generated_tokens} tokens generated, more than the {r.max_possible_tokens} "
            "asked for: dropped streams went on generating"
        )
    return problems


# -- a model to soak with --------------------------------------------------------------


def looping_model(folder: Path) -> Path:
    """The tiny looping synthetic checkpoint as Q8_0 GGUF, built under `folder` once."""
    from edge.model.convert import convert
    from edge.model.quantize import quantize
    from edge.model.synthetic import write_checkpoint

    out = folder / "looping-Q8_0.gguf"
    if not out.exists():
        ckpt = write_checkpoint(folder / "Qwen3-looping", shape="tiny", script=LOOPING_SCRIPT)
        convert(ckpt, folder / "looping-BF16.gguf", outtype="bf16")
        quantize(folder / "looping-BF16.gguf", out, "Q8_0")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=6, help="client requests at once")
    ap.add_argument("--parallel", type=int, default=4, help="the server's --parallel")
    ap.add_argument("--mark", type=int, default=100, help="first measurement after N requests")
    ap.add_argument("--model", type=Path, help="a GGUF (default: the tiny looping model)")
    ap.add_argument("--json", type=Path, help="write the report here as JSON")
    ap.add_argument("--markdown", type=Path, help="write the report here as Markdown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-soak-model-") as tmp:
        model = args.model or looping_model(Path(tmp))
        report = run_soak(model, args.requests, args.concurrency, args.parallel, args.mark)
    if args.json:
        args.json.write_text(report.to_json())
    if args.markdown:
        args.markdown.write_text(report.to_markdown())
    print(report.to_markdown())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
