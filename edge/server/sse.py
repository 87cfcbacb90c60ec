"""Server-sent events, framed in one place for every API that streams.

A stream is `data: <json>` events, `: keep-alive` comments while the prompt is read (so
proxies keep it open), an error sent in-band once the status line is gone, then
`data: [DONE]`. Each API only says what a token and the finish look like.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from edge.engine import Finish, TokenEvent
from edge.server.errors import error_response
from edge.server.worker import Keepalive, Stream

DATA = b"data: "  # an event's field name; the JSON follows
END = b"\n\n"  # an event's end
KEEPALIVE = b": keep-alive" + END  # a comment line: clients skip it, proxies see traffic
DONE = DATA + b"[DONE]" + END


def dumps(payload: Any) -> str:
    """Compact JSON, non-ASCII kept as is: the wire format of every chunk."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def data(payload: dict[str, Any]) -> bytes:
    """One `data:` event."""
    return DATA + dumps(payload).encode() + END


async def frame(
    events: Stream,
    on_token: Callable[[TokenEvent], bytes],
    on_finish: Callable[[Finish], list[dict[str, Any]]],
    head: tuple[dict[str, Any], ...] = (),
) -> AsyncIterator[bytes]:
    """The SSE bytes of one generation: `head` events, then a token's bytes from `on_token`
    (b"" for none: the hot path, one write a token), the events `on_finish` gives, [DONE].
    Closing this iterator (the client left) cancels the generation."""
    for payload in head:
        yield data(payload)
    try:
        event = await anext(events, None)
        while event is not None:
            if isinstance(event, TokenEvent):
                chunk = on_token(event)
                if chunk:
                    yield chunk
            elif isinstance(event, Keepalive):
                yield KEEPALIVE
            elif isinstance(event, Finish):
                for payload in on_finish(event):
                    yield data(payload)
                break
            event = await anext(events, None)
    except Exception as exc:
        yield DATA + bytes(error_response(exc).body) + END
    finally:
        await events.aclose()
    yield DONE
