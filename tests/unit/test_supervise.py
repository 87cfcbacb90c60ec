"""The Supervisor's pure parts: what it answers while the model sleeps (and what it hands
to a new child instead), and reading a request's head without taking it off the socket.
The whole arrangement with real processes is tests/live/test_supervise.py."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from edge.server.errors import error_json
from edge.server.guard import wrong_key
from edge.server.supervise import Probes, peek_head

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
        head("/"),  # the page: the child has it
        head("/api/tags"),  # names the model's file: the child's to say
        head("/health", "POST"),
        b"garbage\r\n\r\n",
    ],
)
def test_anything_else_wakes_a_child(request_head: bytes) -> None:
    assert Probes("m", None).answer(request_head) is None


def test_a_keyed_listing_without_the_key_is_refused_here() -> None:
    probes = Probes("m", KEY)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"x-api-key": "nope"}):
        status, body = body_of(probes.answer(head("/v1/models", **headers)) or b"")
        # In the words the server itself would use.
        assert (status, json.loads(body)) == error_json(wrong_key(), "/v1/models")[:2]
    status, _ = body_of(probes.answer(head("/v1/models", **{"x-api-key": KEY})) or b"")
    assert status == 200


def test_a_head_is_peeked_whole_and_left_for_the_child() -> None:
    a, b = socket.socketpair()
    with a, b:
        request = head("/v1/chat/completions", "POST", **{"content-length": "2"}) + b"{}"
        sent = threading.Thread(
            target=lambda: [b.sendall(request[:10]), time.sleep(0.05), b.sendall(request[10:])]
        )
        sent.start()
        seen = peek_head(a, wait_s=5)
        sent.join()
        assert seen is not None and seen.endswith(b"\r\n\r\n") and seen.startswith(b"POST")
        a.settimeout(1)
        assert a.recv(4096) == request  # nothing was taken off the socket


def test_a_head_that_never_completes_gives_up_in_time() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"GET /health HTTP/1.1\r\nHost")
        started = time.monotonic()
        assert peek_head(a, wait_s=0.3) is None
        assert time.monotonic() - started < 2
        b.close()
        assert peek_head(a, wait_s=0.3) is None  # closed before a whole head
