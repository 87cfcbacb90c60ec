"""Stalled connections against a real uvicorn on 127.0.0.1 (FakeEngine, in a thread): the
head deadline, idle keep-alive, the connection cap, with raw sockets. The same against
`edge-qwen serve` as a process: tests/live/test_security.py."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.config import Settings
from edge.server import create_app
from edge.server.connections import KEEP_ALIVE_S, connection_options, protocol_class
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import running
from tests.support.prompts import HI
from tests.support.seam import qwen_template
from tests.support.sockets import HALF_HEAD, WHOLE_HEAD, answer, lifetimes

HEAD_S = 0.5
SLACK_S = 1.0  # a loaded CI machine's event loop may run a timer late
PROTOCOLS = [HttpToolsProtocol, H11Protocol]


@contextmanager
def server(http: type[asyncio.Protocol], keep_alive_s: int) -> Iterator[int]:
    """A real uvicorn with `http` around a FakeEngine app; yields its port."""
    engine = FakeEngine()
    app = create_app("fake", lambda: (engine, qwen_template()), Settings())
    with running(app, http=http, timeout_keep_alive=keep_alive_s) as url:
        yield int(url.rsplit(":", 1)[1])
    engine.close()


@pytest.fixture(scope="module")
def port_of() -> Iterator[Callable[..., int]]:
    """`port_of(head_s, base=None, cap=None, keep_alive_s=5)`: the port of a server with
    those numbers, started once for the module (a start costs more than most tests)."""
    with ExitStack() as stack:
        ports: dict[tuple[Any, ...], int] = {}

        def port(
            head_s: float, base: Any = None, cap: int | None = None, keep_alive_s: int = 5
        ) -> int:
            key = (head_s, base, cap, keep_alive_s)
            if key not in ports:
                http = protocol_class(head_s, cap, base)
                ports[key] = stack.enter_context(server(http, keep_alive_s))
            return ports[key]

        yield port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


@pytest.mark.parametrize("base", PROTOCOLS, ids=["httptools", "h11"])
def test_a_head_that_stops_halfway_is_closed_at_the_deadline(
    port_of: Callable[..., int], base: Any
) -> None:
    port = port_of(HEAD_S, base)
    with connect(port) as half, connect(port) as silent, connect(port) as again:
        half.sendall(HALF_HEAD)
        # the next request on a keep-alive connection: one answered, then half a head
        again.sendall(WHOLE_HEAD)
        assert answer(again).startswith(b"HTTP/1.1 200")
        again.sendall(HALF_HEAD)
        ends = lifetimes([half, silent, again], HEAD_S + SLACK_S)
    assert all(end is not None and end < HEAD_S + SLACK_S for end in ends), ends


@pytest.mark.parametrize("base", PROTOCOLS, ids=["httptools", "h11"])
def test_a_slow_head_that_ends_in_time_is_served(port_of: Callable[..., int], base: Any) -> None:
    with connect(port_of(HEAD_S, base)) as slow:
        for i in range(0, len(WHOLE_HEAD), 10):  # about 0.3 s in all
            slow.sendall(WHOLE_HEAD[i : i + 10])
            time.sleep(0.04)
        assert answer(slow).startswith(b"HTTP/1.1 200")
        # and the connection lives on: the next head has its own time
        time.sleep(HEAD_S * 0.6)
        slow.sendall(WHOLE_HEAD)
        assert answer(slow).startswith(b"HTTP/1.1 200")


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_time(
    port_of: Callable[..., int],
) -> None:
    # A head deadline longer than keep-alive, so what closes it here is keep-alive.
    with connect(port_of(5.0, keep_alive_s=1)) as idle:
        idle.sendall(WHOLE_HEAD)
        assert answer(idle).startswith(b"HTTP/1.1 200")
        (end,) = lifetimes([idle], 1 + SLACK_S)
    assert end is not None and 0.8 < end < 1 + SLACK_S


def test_requests_are_served_while_many_connections_stall(port_of: Callable[..., int]) -> None:
    port = port_of(HEAD_S)
    with ExitStack() as stack:
        t0 = time.monotonic()
        stalled = [stack.enter_context(connect(port)) for _ in range(150)]
        for sock in stalled:
            sock.sendall(HALF_HEAD)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json={"messages": HI}, timeout=10
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"
        ends = lifetimes(stalled, HEAD_S + SLACK_S + 2)
    assert all(end is not None for end in ends), f"{ends.count(None)} of 150 still open"
    assert time.monotonic() - t0 < HEAD_S + SLACK_S + 3


def test_connections_past_the_cap_are_closed_at_once(port_of: Callable[..., int]) -> None:
    port = port_of(5.0, cap=4)
    time.sleep(0.1)  # the readiness probe's connection has gone
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(port)) for _ in range(6)]
        ends = lifetimes(socks, 0.3)
    assert [end is None for end in ends] == [True] * 4 + [False] * 2, ends


def test_the_options_serve_passes_to_uvicorn() -> None:
    options = connection_options(10.0, 1024)
    assert options["timeout_keep_alive"] == KEEP_ALIVE_S == 5
    http = options["http"]
    assert issubclass(http, HttpToolsProtocol)  # what uvicorn picks with httptools installed
    assert (http.head_timeout_s, http.max_connections) == (10.0, 768)
    assert connection_options(10.0, None)["http"].max_connections is None
