"""Server-sent events, framed in one place for every API that streams.

`relay` runs one generation's events into bytes for any API: a token's bytes, keep-alives
while the prompt is read (so proxies keep the stream open), the finish, or an error sent
in-band once the status line is gone. `frame` is OpenAI's framing over it (`data: <json>`
events, `: keep-alive` comments, `data: [DONE]`); Responses and Messages name their events
(`event`). Each API only says what a token and the finish look like.
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


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One named event, `event: <name>` and its data, as Responses and Messages stream."""
    return b"event: " + name.encode() + b"\n" + data(payload)


def frame(
    events: Stream,
    on_token: Callable[[TokenEvent], bytes],
    on_finish: Callable[[Finish], list[dict[str, Any]]],
    head: tuple[dict[str, Any], ...] = (),
) -> AsyncIterator[bytes]:
    """OpenAI's SSE bytes of one generation: `head` events, then a token's bytes from
    `on_token` (b"" for none: the hot path, one write a token), the events `on_finish`
    gives, `data: [DONE]`; an error after the status line is sent in-band."""
    return relay(
        events,
        on_token,
        lambda finish: b"".join(map(data, on_finish(finish))),
        lambda exc: DATA + bytes(error_response(exc).body) + END,
        head=b"".join(map(data, head)),
        tail=DONE,
    )


async def relay(
    events: Stream,
    on_token: Callable[[TokenEvent], bytes],
    on_finish: Callable[[Finish], bytes],
    on_error: Callable[[Exception], bytes],
    *,
    head: bytes = b"",
    tail: bytes = b"",
    keepalive: bytes = KEEPALIVE,
) -> AsyncIterator[bytes]:
    """The bytes of one generation in any API's framing: `head`, each token's bytes (b""
    for none), `keepalive` after a silent spell, the finish's bytes (or the error's, once
    the status line is gone), `tail`. Closing this iterator (the client left) cancels the
    generation.

    `head` waits for the generation's first event: while a request only waits for a slot
    or its prompt is read, nothing but keep-alive comments goes out, so a router in front
    of several servers (edge-qwen route) can still send it elsewhere if this one dies.
    A client that leaves meanwhile is noticed all the same (Starlette listens for it)."""
    try:
        item = await anext(events, None)
        while item is not None:
            if isinstance(item, Keepalive):
                yield keepalive
            else:
                if head:  # the first event: the answer starts now
                    yield head
                    head = b""
                if isinstance(item, TokenEvent):
                    chunk = on_token(item)
                    if chunk:
                        yield chunk
                elif isinstance(item, Finish):
                    yield on_finish(item)
                    break
            item = await anext(events, None)
    except Exception as exc:
        yield head + on_error(exc)  # the head too, if nothing had come before the error
    finally:
        await events.aclose()
    if tail:
        yield tail
