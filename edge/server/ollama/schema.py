"""Ollama's request bodies (`/api/chat`, `/api/generate`, `/api/show`, `/api/pull`) as
pydantic models; the error object is errors.py's.

As in wire.py, unknown fields are ignored, so options this server has no use for
(`num_gpu`, `num_thread`, `mirostat`, …) are accepted and mean nothing here, and types are
strict, but for one leniency Ollama's own server has too: a whole count may come as a
float (`"num_ctx": 8192.0`), as clients send numbers from settings forms.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from edge.server.wire import BudgetFields, KeepAliveField, Lenient


def _whole(value: object) -> object:
    """8192.0 as 8192 (JSON has one kind of number); anything else as it came."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, BeforeValidator(_whole)]


class OllamaOptions(Lenient):
    """The `options` object: Ollama's runtime parameters that this server honours.
    `num_ctx` is accepted and ignored: the context is fixed when the model loads."""

    num_ctx: Count | None = None
    num_predict: Count | None = None  # -1 (no limit) and -2 (fill the context): no limit
    temperature: float | None = Field(None, ge=0, le=2)
    top_k: Annotated[int, Field(ge=0), BeforeValidator(_whole)] | None = None
    top_p: float | None = Field(None, gt=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    stop: list[str] | None = None
    seed: Count | None = None
    repeat_penalty: float | None = Field(None, gt=0, le=10)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)


class OllamaToolCallFunction(Lenient):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class OllamaToolCall(Lenient):
    """A call the assistant made in an earlier turn; Ollama's arguments are an object."""

    id: str | None = None
    function: OllamaToolCallFunction


class OllamaMessage(Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None  # the tool whose result a `tool` message holds


Format = Literal["", "json"] | dict[str, Any]
Think = bool | Literal["low", "medium", "high"]  # the levels are gpt-oss's; any turns it on


class Generation(BudgetFields, KeepAliveField):
    """What /api/chat and /api/generate share. `stream` is true unless the client says no
    (Ollama's default); `keep_alive` (KeepAliveField) is how long the model stays loaded
    after the request."""

    model: str | None = None
    format: Format | None = None
    options: OllamaOptions | None = None
    stream: bool = True
    think: Think | None = None
    logprobs: bool | None = None


class OllamaChatRequest(Generation):
    """POST /api/chat. No messages at all is a "load" request: answered at once."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateRequest(Generation):
    """POST /api/generate. An empty prompt is a "load" request: answered at once."""

    prompt: str = ""
    system: str | None = None
    raw: bool = False
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: list[str] | None = None


class OllamaModelRequest(Lenient):
    """POST /api/show and the name half of /api/pull; older clients send `name`."""

    model: str | None = None
    name: str | None = None
    verbose: bool = False


class OllamaPullRequest(OllamaModelRequest):
    """POST /api/pull: streamed progress unless `stream` is false."""

    insecure: bool = False
    stream: bool = True
