"""`edge-qwen` as a real process, as a user runs it: a command to its end, or `serve` until
it is ready; and how a failed command must read."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.live_server import WAIT, free_port, wait_ready
from tests.support.repo import REPO_ROOT

CLI_TIMEOUT = 300
EDGE_QWEN = [sys.executable, "-m", "edge.cli"]  # `edge-qwen`, run by this interpreter


def run_cli(
    args: list[str],
    env: dict[str, str],
    timeout: float = CLI_TIMEOUT,
    preexec_fn: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `edge-qwen ARGS` as a real process, as a user would."""
    return subprocess.run(
        [*EDGE_QWEN, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        preexec_fn=preexec_fn,
    )


def start(
    argv: list[str], env: dict[str, str], preexec_fn: Callable[[], object] | None = None
) -> subprocess.Popen[str]:
    """ARGV started from the repository's root, its stdout and stderr piped as text."""
    return subprocess.Popen(
        argv,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """A failed command says what happened in an `error:` line, with no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error: " in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


@contextmanager
def serve(
    args: list[str],
    env: dict[str, str],
    port_in_env: bool = False,
    port: int | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`edge-qwen serve ARGS` on `port` (default: a free one), given by --port or by
    EDGE_QWEN_PORT; `preexec_fn` runs in the child before it starts (run_cli's too)."""
    port = port or free_port()
    if port_in_env:
        env = {**env, "EDGE_QWEN_PORT": str(port)}
    else:
        args = ["--port", str(port), *args]
    proc = start([*EDGE_QWEN, "serve", *args], env, preexec_fn)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, alive=lambda: proc.poll() is None)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


@contextmanager
def route(args: list[str], env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`edge-qwen route ARGS` on a free port; yields the address it prints once LiteLLM is
    ready ("" if it exited first) and the process, killed at the end if still running."""
    proc = start([*EDGE_QWEN, "route", "--port", str(free_port()), *args], env)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
