"""The service's command under systemd's socket-passing protocol: systemd-socket-activate
listens, starts the unit's own command line (ExecStart, Environment=) on the first
connection, and hands it the socket, as a `edge-qwen.socket` unit does."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest

from edge.config import Settings
from edge.service import launch_of, this_python
from edge.service.units import SERVICE_UNIT, Launch, systemd_units
from tests.support.cli import start
from tests.support.live_server import WAIT, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate (systemd) is not installed",
)


def activated(launch: Launch, listen: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """systemd-socket-activate on `listen`, set to run the service's command with only the
    unit's environment (it passes no other variable of ours)."""
    setenv = [f"--setenv={name}={value}" for name, value in launch.env.items()]
    argv = ["systemd-socket-activate", f"--listen={listen}", *setenv, "--", *launch.argv]
    return start(argv, env)


def first_answer(url: str, proc: subprocess.Popen[str]) -> httpx.Response:
    """The first request that gets through: it is what starts the server."""
    deadline = time.monotonic() + WAIT
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}]}
    while True:
        assert proc.poll() is None, proc.communicate(timeout=WAIT)
        try:  # refused only until systemd-socket-activate listens
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=WAIT)
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "systemd-socket-activate never listened"
            time.sleep(0.05)


def knock(port: int) -> None:
    """One connection to systemd-socket-activate's socket, which starts the server."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
            return
        except ConnectionRefusedError:  # not listening yet
            assert time.monotonic() < deadline, "systemd-socket-activate never listened"
            time.sleep(0.05)


def stopped(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.terminate()
    _, err = proc.communicate(timeout=WAIT)
    return proc.returncode, err


def test_the_first_connection_starts_the_server_on_the_inherited_socket(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    model = gguf_of("scripted", "Q8_0")
    launch = launch_of(
        Settings(home=Path(cli_env["EDGE_QWEN_HOME"]), model=str(model)), *this_python()
    )
    assert f"Environment=EDGE_QWEN_MODEL={model}" in systemd_units(launch)[SERVICE_UNIT]
    port = free_port()  # not EDGE_QWEN_PORT's 8000: the server must serve where systemd listens
    proc = activated(launch, f"127.0.0.1:{port}", cli_env)
    try:
        # The connection that starts it waits in the backlog until the model is loaded,
        # then is answered: no 503 "still loading".
        reply = first_answer(f"http://127.0.0.1:{port}", proc)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "Hello world"
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=WAIT).status_code == 200
    finally:
        code, err = stopped(proc)
    assert code == 0, err  # SIGTERM is a clean stop: Restart=on-failure leaves it be
    assert f"Serving scripted-Q8_0 at http://127.0.0.1:{port}/v1" in err, err


def test_a_socket_off_loopback_needs_the_lan_settings(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    # A hand-edited socket unit on 0.0.0.0 with loopback settings would serve the network
    # without a key: the server refuses to start.
    model = gguf_of("scripted", "Q8_0")
    launch = launch_of(
        Settings(home=Path(cli_env["EDGE_QWEN_HOME"]), model=str(model)), *this_python()
    )
    port = free_port()
    proc = activated(launch, f"0.0.0.0:{port}", cli_env)
    knock(port)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1, err
    assert "off loopback" in err and "--lan" in err, err
