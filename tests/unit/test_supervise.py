"""The Supervisor's pure parts: what it answers while the model sleeps (and what it hands
to a new child instead), and reading a request's head without taking it off the socket.
The whole arrangement with real processes is tests/live/test_supervise.py."""

from __future__ import annotations

import json
import socket

import pytest

from edge.server.errors import error_json
from edge.server.guard import wrong_key
from edge.server.supervise import Probes, look
from edge.server.web import CSP, site, static_answer

KEY = "k3y"


def head(path: str, method: str = "GET", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def body_of(response: bytes) -> tuple[int, bytes]:
    top, _, body = response.partition(b"\r\n\r\n")
    assert b"connection: close" in top and f"content-length: {len(body)}".encode() in top
    return int(top.split(b" ")[1]), body


@pytest.mark.parametrize("key", [None, KEY])
def test_probes_are_answered_without_waking(key: str | None) -> None:
    probes = Probes("qwen3-0.6b", key)
    status, body = body_of(probes.answer(head("/health")) or b"")
    assert status == 200 and json.loads(body) == {"status": "asleep"}
    status, body = body_of(probes.answer(head("/metrics?x=1")) or b"")
    assert status == 200 and b"edge_model_loaded 0" in body
    auth = {"Authorization": f"Bearer {KEY}"} if key else {}
    status, body = body_of(probes.answer(head("/v1/models", **auth)) or b"")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "qwen3-0.6b"
    status, body = body_of(probes.answer(head("/api/ps", **auth)) or b"")
    assert json.loads(body) == {"models": []}


@pytest.mark.parametrize(
    "request_head",
    [
        head("/v1/chat/completions", "POST"),
        head("/api/chat", "POST"),
        head("/api/tags"),  # names the model's file: the child's to say
        head("/health", "POST"),
        b"garbage\r\n\r\n",
    ],
)
def test_anything_else_wakes_a_child(request_head: bytes) -> None:
    assert Probes("m", None).answer(request_head) is None


@pytest.mark.parametrize(
    ("path", "method"),
    [("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/api/chat", "POST")],
)
def test_a_keyed_path_without_the_key_is_refused_here(path: str, method: str) -> None:
    """Whatever it asks: a scanner on the LAN must not wake the model (and the GPU)."""
    probes = Probes("m", KEY)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"x-api-key": "nope"}):
        status, body = body_of(probes.answer(head(path, method, **headers)) or b"")
        # In the words the server itself would use.
        assert (status, json.loads(body)) == error_json(wrong_key(), path)[:2]
    keyed = probes.answer(head(path, method, **{"x-api-key": KEY}))
    assert (keyed is None) == (method == "POST")


@pytest.mark.parametrize("encoding", ["", "gzip, deflate, br"])
def test_the_page_and_its_assets_are_served_without_waking(encoding: str) -> None:
    """Opening the page while the model sleeps must not wake it: the parent answers the
    page and every asset it loads, with the server's own bytes and headers (the CSP)."""
    probes = Probes("m", KEY)
    accept = {"Accept-Encoding": encoding} if encoding else {}
    paths = ["/", *site().assets]
    assert len(paths) > 5  # the page, its scripts and styles, the vendored libraries
    for path in paths:
        response = probes.answer(head(path, **accept)) or b""
        served = static_answer(path, encoding)
        assert served is not None
        status, body = body_of(response)
        assert status == 200 and body == served.body, path
        top = response.partition(b"\r\n\r\n")[0].decode()
        for name, value in served.headers.items():
            assert f"{name}: {value}" in top, (path, name)
    top = (probes.answer(head("/")) or b"").partition(b"\r\n\r\n")[0].decode()
    assert f"content-security-policy: {CSP}" in top
    # An old version's asset (a tab left open across an upgrade) is a 404, not a wake-up.
    status, _ = body_of(probes.answer(head("/assets/0123456789ab/app.js")) or b"")
    assert status == 404


def test_a_waking_head_is_peeked_and_left_for_the_child() -> None:
    a, b = socket.socketpair()
    with a, b:
        request = head("/v1/chat/completions", "POST", **{"content-length": "2"}) + b"{}"
        b.sendall(request[:10])
        assert look(a, Probes("m", None)) == "wait"  # the head is still coming
        b.sendall(request[10:])
        assert look(a, Probes("m", None)) == "wake"
        a.settimeout(1)
        assert a.recv(4096) == request  # nothing was taken off the socket


def test_a_probe_is_answered_and_closed() -> None:
    a, b = socket.socketpair()
    with b:
        b.sendall(head("/health"))
        assert look(a, Probes("m", None)) == "done"
        b.settimeout(1)
        assert b'"asleep"' in b.recv(4096)


def test_a_head_that_is_late_closed_or_too_big_is_dropped() -> None:
    for data, late in (
        (b"GET /health HTTP/1.1\r\nHost", True),
        (b"", False),
        (b"x" * 20000, False),
    ):
        a, b = socket.socketpair()
        with b:
            if data:
                b.sendall(data)
            else:
                b.close()
            assert look(a, Probes("m", None), late=late) == "done"
            assert a.fileno() == -1  # closed
