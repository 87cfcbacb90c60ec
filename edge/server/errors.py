"""Errors as HTTP answers, translated once: the table, the error objects, the handlers.

Routes only raise. A domain error (`edge.errors`) finds its row in `TABLE` by class, first
match wins; FastAPI's invalid bodies and its own HTTP errors (404, 405, the Guard's 408
and 413 while the body arrives) get the same shape. The shape is chosen by the request's
path: Anthropic's `{"type": "error", "error": {...}}` under /v1/messages, Ollama's
`{"error": "<message>"}` under /api/, OpenAI's `{"error": {...}}` everywhere else; one row
holds the error type in every dialect (Ollama's has none, only the status and message).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.errors import (
    AuthError,
    BodyTooLargeError,
    ContextFullError,
    ContextOverflowError,
    EdgeError,
    EngineClosedError,
    LoadingError,
    NotFoundError,
    QueueFullError,
    UsageError,
)

# The error bodies in both dialects, as the OpenAPI schema shows them.


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {...}}`."""

    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Every error answer on the Messages paths: `{"type": "error", "error": {...}}`."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class OllamaErrorResponse(BaseModel):
    """Every error answer on Ollama's paths (/api/): `{"error": "<message>"}`."""

    error: str


log = logging.getLogger("edge.server")

RETRY_AFTER = "2"  # seconds: the busy queue, a loading model and a full context all pass


class Row(NamedTuple):
    """How one class of error answers over HTTP."""

    cls: type[EdgeError]
    status: int
    error_type: str  # OpenAI's `type`
    anthropic_type: str  # Anthropic's `error.type`
    code: str | None = None  # OpenAI's `code`
    retry_after: str | None = None  # the Retry-After header, for errors that pass


# One table: error class → HTTP answer. First match wins, so subclasses come before bases.
# ParamError is a UsageError; its `param` rides on the error itself, not on the row.
TABLE: tuple[Row, ...] = (
    Row(
        ContextOverflowError,
        400,
        "invalid_request_error",
        "invalid_request_error",
        "context_length_exceeded",
    ),
    Row(UsageError, 400, "invalid_request_error", "invalid_request_error"),
    Row(AuthError, 401, "authentication_error", "authentication_error"),
    Row(NotFoundError, 404, "invalid_request_error", "not_found_error"),
    Row(BodyTooLargeError, 413, "invalid_request_error", "request_too_large"),
    Row(QueueFullError, 429, "rate_limit_error", "rate_limit_error", retry_after=RETRY_AFTER),
    # Anthropic says 529 for "overloaded"; 503 is the status proxies and every client know,
    # and the anthropic SDKs retry it just the same.
    Row(LoadingError, 503, "server_error", "overloaded_error", retry_after=RETRY_AFTER),
    Row(ContextFullError, 503, "server_error", "overloaded_error", retry_after=RETRY_AFTER),
    Row(EngineClosedError, 503, "server_error", "overloaded_error", retry_after=RETRY_AFTER),
    Row(EdgeError, 500, "server_error", "api_error"),
)

# What /openapi.json says errors look like (instead of FastAPI's 422 validation shape).
OPENAPI_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "OpenAI's error object"},
    "5XX": {"model": ErrorResponse, "description": "OpenAI's error object"},
}
ANTHROPIC_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": AnthropicErrorResponse, "description": "Anthropic's error object"},
    "5XX": {"model": AnthropicErrorResponse, "description": "Anthropic's error object"},
}
OLLAMA_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": OllamaErrorResponse, "description": "Ollama's error object"},
    "5XX": {"model": OllamaErrorResponse, "description": "Ollama's error object"},
}


def row_of(exc: EdgeError) -> Row:
    """The table's row for a domain error (the last row takes every EdgeError)."""
    return next(row for row in TABLE if isinstance(exc, row.cls))


def is_anthropic(path: str) -> bool:
    """Whether a request path is Anthropic's Messages API, whose errors have its shape."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def is_ollama(path: str) -> bool:
    """Whether a request path is Ollama's API, whose errors are `{"error": "<message>"}`."""
    return path.startswith("/api/")


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def anthropic_body(message: str, error_type: str) -> dict[str, Any]:
    """Anthropic's error object."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _body(path: str, message: str, row: Row, param: str | None = None) -> dict[str, Any]:
    if is_anthropic(path):
        return anthropic_body(message, row.anthropic_type)
    if is_ollama(path):  # no `param` field there: the message names the field instead
        return {"error": message if param is None or param in message else f"{param}: {message}"}
    return error_body(message, row.error_type, param, row.code)


def error_json(exc: Exception, path: str = "") -> tuple[int, dict[str, Any], str | None]:
    """Status, body (in the dialect of `path`) and Retry-After of any error: its row for a
    domain error, a bare 500 otherwise."""
    if not isinstance(exc, EdgeError):
        log.exception("unexpected error", exc_info=exc)
        return 500, _body(path, "Internal server error.", TABLE[-1]), None
    row = row_of(exc)
    message = exc.message + (f" {exc.hint}" if exc.hint else "")
    return row.status, _body(path, message, row, exc.param), row.retry_after


def error_response(exc: Exception, path: str = "") -> JSONResponse:
    """The HTTP answer for any error, in the dialect of the request's `path`."""
    status, body, retry_after = error_json(exc, path)
    headers = {"Retry-After": retry_after} if retry_after else None
    return JSONResponse(body, status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer domain errors, invalid request bodies and HTTP errors in the API's shape."""

    @app.exception_handler(EdgeError)
    async def on_edge_error(request: Request, exc: EdgeError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        row = _HTTP_ROWS.get(exc.status_code, _HTTP_OTHER)
        body = _body(request.url.path, str(exc.detail), row)
        return JSONResponse(body, exc.status_code, exc.headers)


# FastAPI's own HTTP errors (no domain class): the error types they answer with.
_HTTP_ROWS = {
    404: Row(EdgeError, 404, "not_found_error", "not_found_error"),
    413: Row(BodyTooLargeError, 413, "invalid_request_error", "request_too_large"),
}
_HTTP_OTHER = Row(EdgeError, 400, "invalid_request_error", "invalid_request_error")


def validation_response(exc: RequestValidationError, path: str = "") -> JSONResponse:
    """A 400 naming the first field at fault (OpenAI's and Anthropic's status, not
    FastAPI's 422)."""
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # Unparsable JSON has the byte offset as its location: no field is at fault.
    param = None if first.get("type") == "json_invalid" else ".".join(loc) or None
    message = (
        f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
        if param
        else f"Invalid JSON body (at byte {loc[0]})."
        if loc
        else "Invalid JSON body."
    )
    return JSONResponse(_body(path, message, _HTTP_OTHER, param), 400)
