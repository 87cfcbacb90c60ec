"""Sleeping by process: a small parent holds the listening socket, the server runs in a
child that exits when its model sleeps, and the next request starts a new child.

Why: llama.cpp frees a model's GPU buffers in-process, but not the CUDA context, which
keeps a laptop's discrete GPU powered (and after a suspend may be the broken part). A
process that exits leaves nothing behind. The same arrangement also survives a crash
(a CUDA error aborts the process): the next request starts a fresh child.

The child is `edge-qwen serve` itself, given the socket as systemd gives it (fd 3,
LISTEN_FDS) plus a hand-over socket (fd 4). While no child runs, this parent answers the
probes (/health, /metrics, and with the key the model lists) without waking anything;
the first other request is handed to the new child as an open connection, its bytes
still unread (they were only peeked at), and the child answers it once loaded.
Nothing passes through this process on the token path.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hmac
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.errors import EdgeError
from edge.server.errors import error_json
from edge.server.guard import KEYED_PATHS, bearer_token, wrong_key

LISTEN_FD = 3  # sd_listen_fds(3)'s first
HANDOFF_FD = 4
HANDOFF_ENV = "EDGE_QWEN_HANDOFF_FD"
READY = b"R"  # the child tells the parent it is serving
HEAD_WAIT_S = 5.0  # a probe's head must arrive within this; the child's own deadline is 10 s
MAX_HEAD = 16384
CRASHES_IN_WINDOW, CRASH_WINDOW_S = 3, 60.0
PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass(frozen=True)
class Probes:
    """What the parent says while the model sleeps."""

    model_id: str
    api_key: str | None

    def answer(self, head: bytes) -> bytes | None:
        """A whole HTTP response for a probe that needs no model, or None: wake for it."""
        method, path, headers = _parse(head)
        if method != "GET":
            return None
        if path == "/health":
            return _response(200, {"status": "asleep"})
        if path == "/metrics":
            return _response(200, "edge_model_loaded 0\n", "text/plain; version=0.0.4")
        if path not in ("/v1/models", "/api/tags", "/api/version", "/api/ps"):
            return None
        if self.api_key and path.startswith(KEYED_PATHS) and not self._key_ok(headers):
            status, body, _ = error_json(wrong_key(), path)
            return _response(status, body)  # a scanner on the LAN wakes nothing
        if path == "/v1/models":
            card = {"id": self.model_id, "object": "model", "created": 0, "owned_by": "edge-qwen"}
            return _response(200, {"object": "list", "data": [card]})
        if path == "/api/ps":
            return _response(200, {"models": []})  # nothing is loaded
        return None  # the rest of Ollama's listings name the model's file: the child's

    def _key_ok(self, headers: dict[str, str]) -> bool:
        key = (self.api_key or "").encode()
        given = bearer_token(headers.get("authorization")) or headers.get("x-api-key", "")
        return hmac.compare_digest(given.encode(), key)


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


def _response(status: int, body: object, kind: str = "application/json") -> bytes:
    data = (body if isinstance(body, str) else json.dumps(body)).encode()
    reason = {200: "OK", 401: "Unauthorized"}.get(status, "")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + data


def peek_head(conn: socket.socket, wait_s: float = HEAD_WAIT_S) -> bytes | None:
    """The request's head, read with MSG_PEEK so that it stays for whoever answers; None
    if it does not come whole in time (the connection is then dropped)."""
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        try:
            seen = conn.recv(MAX_HEAD, socket.MSG_PEEK)
        except OSError:
            return None
        if not seen:
            return None
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            return seen[: end + 4]
        if len(seen) >= MAX_HEAD:
            return None
        time.sleep(0.01)  # more is on its way; a peek does not wait for new bytes


class Supervisor:
    """Runs `argv` (an `edge-qwen serve` command line) as the serving child, again each
    time a request comes after it slept or died (see the module doc)."""

    def __init__(
        self,
        argv: Sequence[str],
        listener: socket.socket,
        probes: Probes,
        say: Callable[[str], None],
    ) -> None:
        self.argv, self.listener, self.probes, self.say = list(argv), listener, probes, say
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.crashes: list[float] = []
        self.starts = 0

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        pending: socket.socket | None = None
        while not self.stopping:
            ours, theirs = socket.socketpair()
            ready, code = self._run_child(theirs, ours, pending)
            pending = None
            if self.stopping:
                break
            if code != 0 and not ready:  # it never served: the model cannot be loaded
                return code
            if code != 0 and self._crashed_too_often(code):
                return 1
            pending = self._asleep()
        return 0

    def _run_child(
        self, theirs: socket.socket, ours: socket.socket, pending: socket.socket | None
    ) -> tuple[bool, int]:
        """Start a child, hand it `pending`, wait for it to end: (it served, its status)."""
        self.child = self._spawn(theirs)
        theirs.close()
        self.starts += 1
        ready = False
        with ours:
            if pending is not None:
                socket.send_fds(ours, [b"c"], [pending.fileno()])
                pending.close()
            while (code := self.child.poll()) is None:
                readable, _, _ = select.select([ours], [], [], 0.5)
                if readable and not ready:
                    ready = ours.recv(1) == READY
        return ready, code

    def _spawn(self, theirs: socket.socket) -> subprocess.Popen[bytes]:
        listen, handoff = self.listener.fileno(), theirs.fileno()

        def as_systemd_does() -> None:
            # In the child, between fork and exec (this process runs no threads): the
            # sockets where sd_listen_fds(3) looks (dup2 also makes them inheritable),
            # and LISTEN_PID, which only the child knows; exec passes this environment
            # on (env=None). Moved high first, so neither lands on the other's number.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (listen, handoff)]
            for fd, target in zip(high, (LISTEN_FD, HANDOFF_FD), strict=True):
                os.dup2(fd, target)
                os.close(fd)
            os.environ.update(
                LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", **{HANDOFF_ENV: str(HANDOFF_FD)}
            )
            # Its own process group, so a terminal's Ctrl-C reaches it once, through us;
            # and on Linux a SIGTERM should we die, so no child outlives its parent.
            os.setpgid(0, 0)
            with contextlib.suppress(Exception):
                ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        # close_fds=False: the two sockets above are made in preexec_fn, after the check
        # pass_fds needs; every other descriptor here is non-inheritable (PEP 446).
        return subprocess.Popen(self.argv, preexec_fn=as_systemd_does, close_fds=False)

    def _crashed_too_often(self, code: int) -> bool:
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S] + [now]
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if len(self.crashes) > CRASHES_IN_WINDOW:
            self.say(f"The server process died again ({how}); giving up.")
            return True
        self.say(f"The server process died ({how}); the next request starts it again.")
        return False

    def _asleep(self) -> socket.socket | None:
        """Answer probes until a request needs the model: that connection, or None when
        asked to stop."""
        while not self.stopping:
            readable, _, _ = select.select([self.listener], [], [], 0.5)
            if not readable:
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            head = peek_head(conn)
            answer = self.probes.answer(head) if head is not None else b""
            if answer is None:
                conn.settimeout(None)
                return conn
            try:
                conn.sendall(answer)
            except OSError:
                pass
            conn.close()
        return None

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)  # it drains its streams, then exits


def supervise(
    argv: Sequence[str], host: str, port: int, probes: Probes, say: Callable[[str], None]
) -> None:
    """Bind `host:port` and run the serving child under a Supervisor until asked to stop;
    a child that cannot load its model ends this with its status."""
    try:
        listener = socket.create_server((host, port), backlog=128)
    except OSError as exc:
        raise EdgeError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    with listener:
        code = Supervisor(argv, listener, probes, say).run()
    if code != 0:
        sys.exit(code)
