"""Running the app under uvicorn: bind, announce, drain on shutdown, exit 0 on SIGTERM."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from edge.errors import EdgeError
from edge.server.connections import connection_options, raise_file_limit
from edge.server.lan import addresses

# How long uvicorn waits for responses that drain() cannot end (a client that stopped
# reading) before it closes them.
GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, api: FastAPI) -> None:
        super().__init__(config)
        self.api = api

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # On the event loop, before uvicorn waits for open responses: running streams
        # end now with a finish reason, queued and new requests get 503.
        self.api.state.runtime.drain()
        await super().shutdown(sockets)


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
    file_limit = raise_file_limit()  # every connection costs a descriptor
    servers: list[uvicorn.Server] = []

    def failed(reason: str) -> None:
        servers[0].should_exit = True

    api = make_app(failed)
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **connection_options(header_timeout_s, file_limit),
    )
    servers.append(_Server(config, api))
    # uvicorn re-raises SIGTERM once it has shut down; asked to stop, we exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    for address in addresses(host):
        say(
            f"Serving {model_id} at http://{address}:{port}/v1 (web chat: http://{address}:{port}/)"
        )
    servers[0].run()
    if api.state.runtime.failed:  # stopped because the model could not be loaded
        raise EdgeError(api.state.runtime.failed)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
