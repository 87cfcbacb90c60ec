"""Errors as HTTP answers, translated once: the table, OpenAI's error object, the handlers.

Routes only raise. A domain error (`edge.errors`) finds its row in `TABLE` by class, first
match wins; FastAPI's invalid bodies and its own HTTP errors (404, 405, the Guard's 408
and 413 while the body arrives) get the same `{"error": {...}}` shape.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.errors import (
    AuthError,
    BodyTooLargeError,
    ContextFullError,
    ContextOverflowError,
    EdgeError,
    EngineClosedError,
    LoadingError,
    QueueFullError,
    UsageError,
)
from edge.server.schema import ErrorResponse

log = logging.getLogger("edge.server")

RETRY_AFTER = "2"  # seconds: the busy queue, a loading model and a full context all pass


class Row(NamedTuple):
    """How one class of error answers over HTTP."""

    cls: type[EdgeError]
    status: int
    error_type: str  # OpenAI's `type`
    code: str | None = None  # OpenAI's `code`
    retry_after: str | None = None  # the Retry-After header, for errors that pass


# One table: error class → HTTP answer. First match wins, so subclasses come before bases.
# ParamError is a UsageError; its `param` rides on the error itself, not on the row.
TABLE: tuple[Row, ...] = (
    Row(ContextOverflowError, 400, "invalid_request_error", "context_length_exceeded"),
    Row(UsageError, 400, "invalid_request_error"),
    Row(AuthError, 401, "authentication_error"),
    Row(BodyTooLargeError, 413, "invalid_request_error"),
    Row(QueueFullError, 429, "rate_limit_error", retry_after=RETRY_AFTER),
    Row(LoadingError, 503, "server_error", retry_after=RETRY_AFTER),
    Row(ContextFullError, 503, "server_error", retry_after=RETRY_AFTER),
    Row(EngineClosedError, 503, "server_error", retry_after=RETRY_AFTER),
    Row(EdgeError, 500, "server_error"),
)

# What /openapi.json says errors look like (instead of FastAPI's 422 validation shape).
OPENAPI_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "OpenAI's error object"},
    "5XX": {"model": ErrorResponse, "description": "OpenAI's error object"},
}


def row_of(exc: EdgeError) -> Row:
    """The table's row for a domain error (the last row takes every EdgeError)."""
    return next(row for row in TABLE if isinstance(exc, row.cls))


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(exc: Exception) -> JSONResponse:
    """The HTTP answer for any error: its row for a domain error, a bare 500 otherwise."""
    if not isinstance(exc, EdgeError):
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(error_body("Internal server error.", "server_error"), 500)
    row = row_of(exc)
    message = exc.message + (f" {exc.hint}" if exc.hint else "")
    body = error_body(message, row.error_type, exc.param, row.code)
    headers = {"Retry-After": row.retry_after} if row.retry_after else None
    return JSONResponse(body, row.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer domain errors, invalid request bodies and HTTP errors in OpenAI's shape."""

    @app.exception_handler(EdgeError)
    async def on_edge_error(_: Request, exc: EdgeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), error_type), exc.status_code, exc.headers)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """A 400 naming the first field at fault (OpenAI's status, not FastAPI's 422)."""
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = (
        f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
        if param
        else "Invalid JSON body."
    )
    return JSONResponse(error_body(message, "invalid_request_error", param), 400)
