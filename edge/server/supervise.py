"""Sleeping by process: a small parent holds the listening socket, the server runs in a
child that exits when its model sleeps, and the next request starts a new child.

Why: llama.cpp frees a model's GPU buffers in-process, but not the CUDA context, which
keeps a laptop's discrete GPU powered (and after a suspend may be the broken part). A
process that exits leaves nothing behind. The same arrangement also survives a crash
(a CUDA error aborts the process): the next request starts a fresh child.

The child is `edge-qwen serve` itself, given the socket as systemd gives it (fd 3,
LISTEN_FDS) plus a hand-over socket (fd 4). While no child runs, this parent answers the
probes (/health, /metrics, and with the key the model lists) and the web page with its
assets without waking anything; the first other request is handed to the new child as
an open connection, its bytes still unread (they were only peeked at), and the child
answers it once loaded.
Nothing passes through this process on the token path.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
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
from typing import Any

from edge.errors import EdgeError
from edge.server.errors import error_json
from edge.server.guard import KEYED_PATHS, key_matches, wrong_key
from edge.server.web import PROMETHEUS, model_list, static_answer

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
        """A whole HTTP response for a request that needs no model, or None: wake for it.
        A keyed path without the key is refused here, whatever its method, so a scanner
        on the LAN wakes nothing."""
        method, path, headers = _parse(head)
        if self.api_key and path.startswith(KEYED_PATHS) and not key_matches(headers, self.api_key):
            status, body, _ = error_json(wrong_key(), path)
            return _response(status, body)
        if method != "GET":
            return None
        if path == "/health":
            return _response(200, {"status": "asleep"})
        if path == "/metrics":
            return _response(200, "edge_model_loaded 0\n", PROMETHEUS)
        served = static_answer(path, headers.get("accept-encoding", ""))
        if served is not None:  # the page and its assets: a tab opened asleep wakes nothing
            kind = served.headers["content-type"]
            return _response(served.status, served.body, kind, served.headers)
        if path == "/v1/models":
            return _response(200, model_list(self.model_id))
        if path == "/api/ps":
            return _response(200, {"models": []})  # nothing is loaded
        return None  # Ollama's listings describe the model's file: the child's to say


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


def _response(
    status: int, body: object, kind: str = "application/json", extra: dict[str, str] | None = None
) -> bytes:
    if isinstance(body, bytes):
        data = body
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}.get(status, "")
    more = {k: v for k, v in (extra or {}).items() if k != "content-type"}
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {kind}"]
    lines += [f"{k}: {v}" for k, v in more.items()]
    lines += [f"content-length: {len(data)}", "connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def look(conn: socket.socket, probes: Probes, late: bool = False) -> str:
    """Peek at `conn`'s request head (MSG_PEEK: the bytes stay for whoever answers):
    "done" when a probe was answered or a dead, late or oversized head dropped, "wake"
    when the request needs the model, "wait" while the head is still coming."""
    try:
        seen = conn.recv(MAX_HEAD, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "wait"
    except OSError:
        seen = b""
    end = seen.find(b"\r\n\r\n")
    if not seen or (end < 0 and (late or len(seen) >= MAX_HEAD)):
        conn.close()
        return "done"
    if end < 0:
        return "wait"
    answer = probes.answer(seen[: end + 4])
    if answer is None:
        return "wake"
    with contextlib.suppress(OSError):
        conn.sendall(answer)
    conn.close()
    return "done"


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

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        pending: list[socket.socket] = []
        while not self.stopping:
            ready, code = self._run_child(pending)
            pending = []
            if self.stopping:
                break
            if code != 0 and not ready:  # it never served: the model cannot be loaded
                return 128 - code if code < 0 else code
            if code != 0 and self._crashed_too_often(code):
                return 1
            pending = self._asleep()
        return 0

    def _run_child(self, pending: list[socket.socket]) -> tuple[bool, int]:
        """Start a child, hand it `pending`, wait for it to end: (it served, its status)."""
        ours, theirs = socket.socketpair()
        with ours:
            try:
                self.child = self._spawn(theirs)
            finally:
                theirs.close()
            if self.stopping:  # a signal that came while it was being started
                self.child.send_signal(signal.SIGTERM)
            for conn in pending:
                with conn, contextlib.suppress(OSError):  # a child already gone: its loss
                    socket.send_fds(ours, [b"c"], [conn.fileno()])
            ready = False
            while (code := self.child.poll()) is None:
                readable, _, _ = select.select([ours], [], [], 0.5)
                if readable and not ready:
                    ready = ours.recv(1) == READY
        return ready, code

    def _spawn(self, theirs: socket.socket) -> subprocess.Popen[bytes]:
        listen, handoff = self.listener.fileno(), theirs.fileno()
        on_parent_death = _prctl()  # looked up here: no dlopen between fork and exec

        def as_systemd_does() -> None:
            # In the child, between fork and exec, only system calls (this process may
            # run threads, e.g. the mDNS announcer's): the sockets where sd_listen_fds(3)
            # looks (dup2 also makes them inheritable), moved high first so that neither
            # lands on the other's number; and, on Linux, a SIGTERM should we die.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (listen, handoff)]
            for fd, target in zip(high, (LISTEN_FD, HANDOFF_FD), strict=True):
                os.dup2(fd, target)
                os.close(fd)
            if on_parent_death is not None:
                on_parent_death(PR_SET_PDEATHSIG, signal.SIGTERM)

        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_PID", "LISTEN_FDNAMES")}
        env.update(LISTEN_FDS="1", **{HANDOFF_ENV: str(HANDOFF_FD)})
        # close_fds=False: the two sockets above are made in preexec_fn, after the check
        # pass_fds needs; every other descriptor here is non-inheritable (PEP 446). A
        # session of its own, so a terminal's Ctrl-C reaches it once, through us.
        return subprocess.Popen(
            self.argv, env=env, preexec_fn=as_systemd_does, close_fds=False, start_new_session=True
        )

    def _crashed_too_often(self, code: int) -> bool:
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S] + [now]
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if len(self.crashes) > CRASHES_IN_WINDOW:
            self.say(f"The server process died again ({how}); giving up.")
            return True
        self.say(f"The server process died ({how}); the next request starts it again.")
        return False

    def _asleep(self) -> list[socket.socket]:
        """Answer probes until a request needs the model; then that connection and every
        other one accepted and not yet answered (the child reads them itself), or none
        when asked to stop. Heads are awaited side by side, so a silent connection
        delays nobody."""
        waiting: dict[socket.socket, float] = {}  # accepted, head not whole yet: deadline
        while not self.stopping:
            readable, _, _ = select.select([self.listener, *waiting], [], [], 0.25)
            now = time.monotonic()
            for conn in readable:
                if conn is self.listener:
                    with contextlib.suppress(OSError):
                        accepted, _ = self.listener.accept()
                        waiting[accepted] = now + HEAD_WAIT_S
                    continue
                outcome = look(conn, self.probes, late=now >= waiting[conn])
                if outcome == "wake":
                    return [*waiting]  # this one, and the others, to the new child
                if outcome == "done":
                    del waiting[conn]
                else:  # a head still coming stays readable (peeked, not read): pace the loop
                    time.sleep(0.01)
            for conn, deadline in list(waiting.items()):
                if now >= deadline:
                    conn.close()
                    del waiting[conn]
        for conn in waiting:
            conn.close()
        return []

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)  # it drains its streams, then exits


def _prctl() -> Any:
    """libc's prctl (Linux), or None."""
    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


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
