"""Raw-socket helpers for the tests of stalled connections: how long each socket lived,
and one whole answer read off a keep-alive connection."""

from __future__ import annotations

import selectors
import socket
import time

HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"
"""A request line and headers without the blank line that ends them."""
WHOLE_HEAD = HALF_HEAD + b"\r\n"


def lifetimes(
    socks: list[socket.socket], limit: float, since: float | None = None
) -> list[float | None]:
    """Seconds from `since` (default: now) until the server closed each socket; None for
    one still open `limit` seconds after `since`. What the server sends is read and dropped."""
    t0 = time.monotonic() if since is None else since
    ends: list[float | None] = [None] * len(socks)
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(socks):
            sel.register(sock, selectors.EVENT_READ, i)
        while sel.get_map() and (left := limit - (time.monotonic() - t0)) > 0:
            for key, _ in sel.select(timeout=left):
                sock = socks[key.data]
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    ends[key.data] = time.monotonic() - t0
                    sel.unregister(sock)
    return ends


def answer(sock: socket.socket) -> bytes:
    """One whole response (with a Content-Length) from a keep-alive connection."""
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole answer: {data!r}"
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0
