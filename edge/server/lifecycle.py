"""Running the app under uvicorn: bind (or take systemd's socket), announce, drain on
shutdown, exit 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from edge.errors import EdgeError
from edge.server.connections import connection_options, raise_file_limit
from edge.server.lan import addresses, is_loopback
from edge.server.supervise import HANDOFF_ENV, READY

# How long uvicorn waits for responses that drain() cannot end (a client that stopped
# reading) before it closes them.
GRACEFUL_SHUTDOWN_S = 5
# Exiting because the model sleeps, how long a request that came in the meantime may take.
EXIT_GRACE_S = 60


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, api: FastAPI, handoff: socket.socket | None = None
    ) -> None:
        super().__init__(config)
        self.api = api
        self.handoff = handoff  # from a Supervisor (supervise.py), when it runs us

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        loaded = self.api.state.runtime.worker is not None and not self.should_exit
        if self.handoff is not None and self.started and loaded:
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=self._receive, args=(loop,), name="edge-handoff", daemon=True
            ).start()
            self.handoff.sendall(READY)  # the model is loaded: the parent may hand over

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connections the parent accepted (their bytes unread), adopted as our own."""
        assert self.handoff is not None
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.handoff, 1, 4)
            except OSError:
                return
            if not fds:  # the parent is gone (no PR_SET_PDEATHSIG off Linux): stop too
                loop.call_soon_threadsafe(setattr, self, "should_exit", True)
                return
            for fd in fds:
                os.set_inheritable(fd, False)
                loop.call_soon_threadsafe(self._adopt, socket.socket(fileno=fd))

    def _adopt(self, conn: socket.socket) -> None:
        config = self.config

        def protocol() -> asyncio.Protocol:  # as uvicorn's own listener makes them
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        conn.setblocking(False)
        asyncio.ensure_future(asyncio.get_running_loop().connect_accepted_socket(protocol, conn))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # On the event loop, before uvicorn waits for open responses: running streams
        # end now with a finish reason, queued and new requests get 503. Not when exiting
        # because the model sleeps: a request that came on an open connection meanwhile
        # is answered by the model still loaded, and new ones wait in the socket's queue.
        if self.api.state.runtime.state != "exiting":
            self.api.state.runtime.drain()
        await super().shutdown(sockets)

    def exit_asleep(self) -> None:
        """The model sleeps, socket-activated: stop listening at once (new connections wait
        in the socket's queue for the holder: systemd, or the Supervisor, which starts a
        new process for them), let open requests finish, then exit."""
        for server in self.servers:
            server.close()
        self.config.timeout_graceful_shutdown = EXIT_GRACE_S
        self.should_exit = True


def serve_forever(
    make_app: Callable[[Callable[[str], None]], FastAPI],
    host: str,
    port: int,
    model_id: str,
    say: Callable[[str], None],
    *,
    header_timeout_s: float,
) -> None:
    """Serve `make_app(on_failed)` until SIGINT or SIGTERM.

    `on_failed` stops the server when the model cannot be loaded (no model, no server: a
    supervisor can restart it), and this then raises the reason as an EdgeError. A client
    must send a request's headers within `header_timeout_s` (server/connections.py).
    """
    servers: list[_Server] = []
    listener = inherited_socket()  # first: before any thread or child sees LISTEN_*
    handoff = handoff_socket()
    file_limit = raise_file_limit()  # every connection costs a descriptor

    def failed(reason: str) -> None:
        servers[0].should_exit = True

    api = make_app(failed)
    if listener is not None:
        host, port = _activated_address(listener, host)
        _accept_once_loaded(api, lambda: servers[0].should_exit)
        # Asleep, exit: the socket's holder (systemd, or our Supervisor) keeps it, and
        # starts us again on the next connection; nothing of CUDA outlives a process.
        api.state.runtime.on_sleep = lambda: servers[0].exit_asleep()
        api.state.runtime.first_load_owed = True
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **connection_options(header_timeout_s, file_limit),
    )
    servers.append(_Server(config, api, handoff))
    # uvicorn re-raises SIGTERM once it has shut down; asked to stop, we exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    for address in addresses(host):
        say(
            f"Serving {model_id} at http://{address}:{port}/v1 (web chat: http://{address}:{port}/)"
        )
    # Handed over as a socket object, not uvicorn's fd=: that path declares every fd
    # AF_UNIX, so asyncio would skip TCP_NODELAY on each connection (SSE stalls).
    servers[0].run(sockets=[listener] if listener is not None else None)
    if api.state.runtime.failed:  # stopped because the model could not be loaded
        raise EdgeError(api.state.runtime.failed)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


# sd_listen_fds(3): systemd passes its sockets from fd 3 on.
SD_LISTEN_FDS_START = 3


def handoff_socket(environ: MutableMapping[str, str] = os.environ) -> socket.socket | None:
    """The Supervisor's hand-over socket, when it started us (supervise.py); the variable
    is removed, so no child of ours takes it."""
    fd = environ.pop(HANDOFF_ENV, "")
    if not fd.isdigit():
        return None
    sock = socket.socket(fileno=int(fd))
    os.set_inheritable(int(fd), False)
    return sock


def inherited_socket(environ: MutableMapping[str, str] = os.environ) -> socket.socket | None:
    """The listening socket systemd passed (socket activation), or None to bind our own.

    Follows sd_listen_fds(3): only when LISTEN_PID is this process and LISTEN_FDS >= 1,
    and the LISTEN_* variables are removed either way, so no child takes the socket for
    its own. This is the process's inheritance protocol, not a setting, hence read here.
    """
    pid = environ.pop("LISTEN_PID", "")
    count = environ.pop("LISTEN_FDS", "")
    environ.pop("LISTEN_FDNAMES", None)
    # Our Supervisor cannot set LISTEN_PID (only the child knows its pid, and setting the
    # environment between fork and exec is unsafe in a process with threads); its own
    # hand-over variable, given to its child alone, says the socket is ours instead.
    ours = pid == str(os.getpid()) or HANDOFF_ENV in environ
    if not ours or not count.isdigit() or int(count) < 1:
        return None
    fd = SD_LISTEN_FDS_START  # our socket unit has one ListenStream: the first is ours
    try:
        sock = socket.socket(fileno=fd)  # family and type read from the fd itself
    except OSError as exc:
        raise EdgeError(
            f"systemd said it passed a socket, but fd {fd} is not one: {exc}.",
            "Check the socket unit (edge-qwen service status).",
        ) from None
    os.set_inheritable(fd, False)  # systemd passes it inheritable; children must not keep it
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise EdgeError(
            "The socket systemd passed is not a TCP socket, which HTTP clients need.",
            "Use ListenStream=ADDRESS:PORT in the socket unit.",
        )
    return sock


def _activated_address(listener: socket.socket, host: str) -> tuple[str, int]:
    """The address the inherited socket listens on, for the announcement; refuses one off
    loopback when the settings were for loopback, since no API key was required then."""
    bound, bound_port = listener.getsockname()[:2]
    if not is_loopback(bound) and is_loopback(host):
        raise EdgeError(
            f"systemd passed a socket on {bound}:{bound_port}, off loopback, but the "
            f"settings bind {host}, so the server would run without an API key.",
            "Reinstall with `edge-qwen service install --lan` (or set EDGE_QWEN_LAN=true), "
            "or make the socket unit listen on 127.0.0.1.",
        )
    return bound, bound_port


def _accept_once_loaded(api: FastAPI, stopping: Callable[[], bool]) -> None:
    """Socket-activated, accept connections only once the model is loaded: the connection
    that started us waits in the socket's backlog, then gets an answer, not a 503."""
    runtime = api.state.runtime
    inner = api.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):  # starts the load (create_app's lifespan)
            while runtime.worker is None and not runtime.failed and not stopping():
                await asyncio.sleep(0.05)
            yield

    api.router.lifespan_context = lifespan
