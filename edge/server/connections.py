"""Connections that hold a socket without asking for anything: the head deadline, the
idle keep-alive limit, the connection cap and the open-file limit that they all spend.

uvicorn closes an idle keep-alive connection only after a response; a connection that
never finishes its request line and headers is held for as long as the client likes
(uvicorn issue #157). Each costs a file descriptor, so a few hundred of them from one
neighbour on the LAN used up a desktop's usual 1,024. The body has its own deadline
(guard.py's `body_timeout_s`); this module covers what comes before it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

# uvicorn's own default, set here so that it is ours: an idle keep-alive connection is
# closed this many seconds after its last response. Clients reuse a connection within
# moments or not at all (httpx keeps idle ones 5 s too), so longer only holds sockets.
KEEP_ALIVE_S = 5
# The open-file limit we ask for at start: enough for tens of thousands of connections,
# far below what the kernel allows a process (Linux's nr_open is 1,048,576).
FILE_LIMIT_CAP = 65536
# macOS refuses a limit above OPEN_MAX (10,240) on some versions; the second try.
FILE_LIMIT_FALLBACK = 10240


class HeadDeadline:
    """A mixin for uvicorn's HTTP protocols: a connection that waits for a request head
    (request line and headers) closes if the head is not complete `head_timeout_s` after
    the wait began: at connect, or when the previous response finished (keep-alive).

    It reads only what both of uvicorn's protocols (httptools and h11) keep: `cycle` is the
    request whose head came last, so the connection waits for a head while there is none
    or its response is complete. Past `max_connections` open ones, a new connection is
    closed at once, so connections cannot take the descriptors the rest of the process
    needs. The subclasses set both numbers (see `protocol_class`).
    """

    head_timeout_s: float = 10.0
    max_connections: int | None = None

    # What uvicorn's protocol classes provide.
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    cycle: Any

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            transport.close()
            return
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _watch_head(self) -> None:
        """Start the clock when a wait for a head begins, stop it when the head is in."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_late)
        elif not waiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        # An upgraded connection (WebSocket) belongs to another protocol now.
        if self.transport.get_protocol() is self and not self.transport.is_closing():
            self.transport.close()


def _uvicorn_protocol() -> type[asyncio.Protocol]:
    """The protocol uvicorn's "auto" picks: httptools where it is installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return H11Protocol
    return HttpToolsProtocol


def protocol_class(
    head_timeout_s: float,
    max_connections: int | None = None,
    base: type[asyncio.Protocol] | None = None,
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (`base`, else the one it would pick) with `HeadDeadline`,
    for `uvicorn.Config(http=...)`; a class per call, so no setting outlives its server."""
    numbers = {"head_timeout_s": head_timeout_s, "max_connections": max_connections}
    made = type("HeadDeadlineProtocol", (HeadDeadline, base or _uvicorn_protocol()), numbers)
    return cast("type[asyncio.Protocol]", made)


def connection_options(
    head_timeout_s: float, file_limit: int | None, keep_alive_s: int = KEEP_ALIVE_S
) -> dict[str, Any]:
    """The `uvicorn.Config` arguments for all of the above.

    The cap on open connections is three quarters of the open-file limit: the rest stays
    for the model, logs, pulls and the event loop's own. uvicorn's `limit_concurrency` is
    not used: it counts idle and half-sent connections too and answers 503 past its number,
    so a few dozen stalled sockets would refuse every real client, while it frees no
    descriptor. The engine already bounds the work (`parallel` running, `max_queue`
    waiting, 429 beyond), and long streams must not count against a connection budget.
    """
    cap = file_limit * 3 // 4 if file_limit else None
    return {
        "http": protocol_class(head_timeout_s, cap),
        "timeout_keep_alive": keep_alive_s,
    }


def raise_file_limit(cap: int = FILE_LIMIT_CAP) -> int | None:
    """Raise the soft open-file limit toward the hard one (at most `cap`); the soft limit
    now in force, None where there is no such limit (Windows). Never fails: where the
    system refuses, the limit stays as it was."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    ceiling = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    for want in (ceiling, min(ceiling, FILE_LIMIT_FALLBACK)):
        if want <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            continue
        return want
    return soft
