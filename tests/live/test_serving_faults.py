"""Faults while serving: the model file changing under a running server, and shutdown.

The model file: a CPU plan reads the weights into memory (edge/plan.py, use_mmap off), so
deleting, overwriting or replacing the GGUF does not touch the running server.

Shutdown: `EngineWorker.drain()` ends running generations at the engine's next step with
finish reason "length" (a final chunk, then [DONE]: the stream is cut short, as by
max_tokens, not broken), and refuses queued and new requests with a 503 in OpenAI's
shape. `edge-qwen serve` calls it (through Runtime.drain) when SIGTERM arrives and exits 0
within seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.cli import EDGE_QWEN, start
from tests.support.live_server import free_port, serving, wait_ready

WAIT = 60.0
HI = [{"role": "user", "content": "Hi"}]
# A runaway answer (the looping model never stops by itself): only a shutdown ends it soon.
RUNAWAY: dict[str, Any] = {
    "model": "x",
    "messages": HI,
    "stream": True,
    "max_tokens": 12000,
    "loop_guard": False,
}
EXIT_LIMIT = 10.0  # seconds from SIGTERM to the process gone


@contextmanager
def started(args: list[str], env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`edge-qwen serve ARGS` as a real process; killed at the end if still running."""
    port = free_port()
    proc = start([*EDGE_QWEN, "serve", "--port", str(port), *args], env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, alive=lambda: proc.poll() is None)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)


def ask(url: str) -> str:
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "x", "messages": HI}, timeout=WAIT)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_the_model_file_changing_under_the_server_changes_nothing(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    shutil.copyfile(gguf_of("scripted", "Q8_0"), model)
    size = model.stat().st_size
    with started(["-m", str(model), "--parallel", "2"], cli_env) as (url, proc):
        assert ask(url) == "Hello world"
        # The weights were read, not mapped: the file is neither mapped nor held open.
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert str(model) not in maps
        fds = [
            os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")
        ]
        assert str(model) not in fds
        with model.open("r+b") as f:  # overwritten in place: same inode, other bytes
            f.write(os.urandom(size))
        assert ask(url) == "Hello world"
        other = shutil.copyfile(gguf_of("looping", "Q8_0"), tmp_path / "other.gguf")
        os.replace(other, model)  # replaced by another model, as the store writes: a rename
        assert ask(url) == "Hello world"
        model.unlink()  # deleted
        answers = [ask(url) for _ in range(10)]  # no 500 storm: every request still served
        assert answers == ["Hello world"] * 10
        assert httpx.get(f"{url}/health", timeout=WAIT).status_code == 200
        assert proc.poll() is None


class Reader(threading.Thread):
    """Reads one streamed request's SSE `data:` payloads in the background."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.status: int | None = None
        self.payloads: list[Any] = []
        self.done = False
        self.error: str | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "POST", f"{self.url}/v1/chat/completions", json=self.body, timeout=WAIT
            ) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: "):
                        self.payloads.append(json.loads(line[6:]))
        except Exception as exc:  # a cut connection: recorded, and the test fails on it
            self.error = f"{type(exc).__name__}: {exc}"

    @property
    def finish_reasons(self) -> list[str]:
        return [
            c["finish_reason"]
            for p in self.payloads
            for c in p.get("choices", [])
            if c.get("finish_reason")
        ]

    def wait_for_chunks(self, n: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.payloads) < n:
            assert self.error is None and not self.done, (self.error, self.payloads[-1:])
            assert time.monotonic() < deadline, "the stream did not start"
            time.sleep(0.02)


def post_later(url: str, out: list[Any]) -> threading.Thread:
    """A non-streamed request in a thread; its response (or exception) lands in `out`."""

    def run() -> None:
        try:
            body = {**RUNAWAY, "stream": False, "max_tokens": 5}
            out.append(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=WAIT))
        except httpx.TransportError as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_queued(url: str, n: int) -> None:
    deadline = time.monotonic() + WAIT
    while f"edge_queue_depth {n}" not in httpx.get(f"{url}/metrics", timeout=WAIT).text:
        assert time.monotonic() < deadline, "the requests were not queued"
        time.sleep(0.02)


def assert_cut_cleanly(stream: Reader) -> None:
    """Ended early with a final chunk saying "length", then [DONE]; nothing broken."""
    assert stream.error is None and stream.status == 200, stream.error
    assert stream.done, "no [DONE]: the connection was cut"
    assert stream.finish_reasons == ["length"]
    assert len(stream.payloads) < RUNAWAY["max_tokens"]  # cut short, not run to the end


def assert_503(r: Any) -> None:
    assert isinstance(r, httpx.Response) and r.status_code == 503, r
    error = r.json()["error"]
    assert error["type"] == "server_error" and "shutting down" in error["message"]


def test_drain_ends_streams_with_a_finish_reason_and_refuses_the_rest(
    gguf_of: Callable[[str, str], Path],
) -> None:
    with serving(gguf_of("looping", "Q8_0"), n_ctx=16384, parallel=2) as (url, app):
        worker = app.state.runtime.worker
        streams = [Reader(url, RUNAWAY) for _ in range(2)]
        for s in streams:
            s.start()
        for s in streams:
            s.wait_for_chunks(5)
        queued_stream, queued_plain = Reader(url, RUNAWAY), list[Any]()  # both wait for a slot
        queued_stream.start()
        waiter = post_later(url, queued_plain)
        wait_queued(url, 2)
        started_at = time.monotonic()
        worker.drain()
        for s in streams:
            s.join(WAIT)
            assert_cut_cleanly(s)
        queued_stream.join(WAIT)
        waiter.join(WAIT)
        assert time.monotonic() - started_at < 5.0
        assert_503(queued_plain[0])  # it never started: a status it can act on
        # Its stream had already answered 200: the refusal comes in-band, then [DONE].
        assert queued_stream.done and queued_stream.finish_reasons == []
        assert queued_stream.payloads[-1]["error"]["type"] == "server_error"
        late = httpx.post(
            f"{url}/v1/chat/completions", json={**RUNAWAY, "stream": False}, timeout=WAIT
        )
        assert_503(late)
        assert worker.in_flight == 0


def test_sigterm_during_streams_is_graceful(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    args = ["-m", str(gguf_of("looping", "Q8_0")), "--parallel", "2", "--ctx", "16384"]
    with started(args, cli_env) as (url, proc):
        streams = [Reader(url, RUNAWAY) for _ in range(2)]
        for s in streams:
            s.start()
        for s in streams:
            s.wait_for_chunks(5)
        queued: list[Any] = []
        waiter = post_later(url, queued)
        wait_queued(url, 1)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code: int | None = proc.wait(timeout=EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            code = None
            proc.kill()  # so that the readers end now and the test fails at once
        took = time.monotonic() - signalled
        print(f"SIGTERM: exit code {code} after {took:.2f} s")
        for s in streams:
            s.join(WAIT)
        waiter.join(WAIT)
        assert code == 0, (code, took)
        assert took < EXIT_LIMIT
        for s in streams:
            assert_cut_cleanly(s)
        assert_503(queued[0])
        with pytest.raises(httpx.TransportError):  # gone: new connections are refused
            httpx.get(f"{url}/health", timeout=5)
