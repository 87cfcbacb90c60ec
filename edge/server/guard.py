"""What a request must pass before any route sees it: body size, body deadline, API key,
and the CORS headers around all of it."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, HTTPException

from edge.errors import AuthError, BodyTooLargeError, EdgeError
from edge.server.errors import error_response
from edge.server.metrics import Metrics


def install_guard(
    app: FastAPI,
    metrics: Metrics,
    *,
    api_key: str | None,
    max_body_bytes: int,
    body_timeout_s: float,
    cors_origins: tuple[str, ...],
) -> None:
    """The Guard, and CORS around it when origins are named."""
    # The Guard refuses before anything reads the body. CORS, added after it, wraps it (the
    # last added runs first): a browser's preflight never carries the key, so it must be
    # answered before the Guard asks for one, and refusals then carry CORS headers too.
    # CORSMiddleware never reads the body, so the size limit still comes first.
    app.add_middleware(
        Guard,
        metrics=metrics,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout_s,
    )
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            # Anthropic's clients send their key and API version in headers of their own.
            allow_headers=[
                "authorization",
                "content-type",
                "x-api-key",
                "anthropic-version",
                "anthropic-beta",
                "anthropic-dangerous-direct-browser-access",
            ],
            allow_credentials=False,
        )


KEYED_PATHS = ("/v1/", "/api/")  # OpenAI's and Anthropic's APIs; Ollama's


def key_matches(headers: dict[str, str], api_key: str) -> bool:
    """Whether lower-cased `headers` carry `api_key`. OpenAI's clients send the key as a
    bearer token, Anthropic's as `x-api-key`; either will do. Both are compared in
    constant time, every time (no short-circuit), so the answer's timing says nothing
    about the key."""
    key = api_key.encode()
    token = bearer_token(headers.get("authorization")) or ""
    bearer = hmac.compare_digest(token.encode(), key)
    x_api_key = hmac.compare_digest(headers.get("x-api-key", "").encode(), key)
    return bearer | x_api_key


def wrong_key() -> AuthError:
    """What a request to a keyed path gets without the right key (401)."""
    return AuthError(
        "Missing or wrong API key.", "Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None for any other. The
    scheme is case-insensitive (RFC 9110 §11.1): clients send `bearer` too."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Guard:
    """Body-size limit, body deadline and API key, as plain ASGI; counts every status.

    The size is checked twice: on Content-Length before anything is read, and on the bytes
    as they arrive, for chunked bodies that announce no length. The body must also arrive
    within `body_timeout_s`, so a client trickling bytes cannot hold a request open forever.
    The key guards the APIs (KEYED_PATHS) only: the page, /health and /metrics stay open.
    (Starlette's BaseHTTPMiddleware would wrap `receive` and can make a streaming
    response look disconnected, which cancels generations that are still wanted.)
    """

    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        api_key: str | None,
        max_body_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self.app, self.metrics, self.api_key = app, metrics, api_key
        self.max_body_bytes, self.body_timeout_s = max_body_bytes, body_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(str(scope.get("path", "")), int(message["status"]))
            await send(message)

        problem = self._check(scope)
        if problem is not None:
            await error_response(problem, str(scope.get("path", "")))(scope, receive, counting_send)
            return
        await self.app(scope, self._bounded(receive), counting_send)

    def _check(self, scope: dict[str, Any]) -> EdgeError | None:
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        size = headers.get("content-length", "")
        if size.isascii() and size.isdigit() and int(size) > self.max_body_bytes:
            return BodyTooLargeError(f"The request body is over {self.max_body_bytes} bytes.")
        if self.api_key and str(scope.get("path", "")).startswith(KEYED_PATHS):
            if not key_matches(headers, str(self.api_key)):
                return wrong_key()
        return None

    def _bounded(self, receive: Any) -> Callable[[], Any]:
        """`receive`, refusing a body over the limit or late; untouched once the body is in
        (a streaming response then waits on it for the client's disconnect)."""
        limit, timeout = self.max_body_bytes, self.body_timeout_s
        deadline = time.monotonic() + timeout
        seen, done = 0, False
        close = {"Connection": "close"}  # the rest of the body is never read

        async def bounded() -> Any:
            nonlocal seen, done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                late = f"The request body did not arrive within {timeout:g} seconds."
                raise HTTPException(408, late, close) from None
            if message["type"] != "http.request":
                done = True
                return message
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"The request body is over {limit} bytes.", close)
            done = not message.get("more_body", False)
            return message

        return bounded
