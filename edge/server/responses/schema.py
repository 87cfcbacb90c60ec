"""OpenAI Responses request bodies as pydantic models; unknown fields are ignored.

Types are strict, as in wire.py. Input items come in many shapes (a message with or
without `type`, function calls and their outputs, reasoning sent back); they stay plain
dicts here and request.py checks each, naming the item at fault.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edge.server.wire import BudgetFields, KeepAliveField, Lenient


class ReasoningParam(Lenient):
    effort: str | None = None
    summary: str | None = None  # accepted; Qwen3 has no summaries, its reasoning is whole


class TextFormat(Lenient):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextParam(Lenient):
    format: TextFormat | None = None


class ResponsesRequest(BudgetFields, KeepAliveField):
    """POST /v1/responses."""

    model: str | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningParam | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    text: TextParam | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    # "message.output_text.logprobs" is honoured; the rest (Codex CLI asks for
    # "reasoning.encrypted_content") name things this server never has, and are ignored.
    include: list[str] | None = None
    # Refused when set, by name, rather than quietly ignored.
    background: bool | None = None
    n: int | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    top_logprobs: int | None = None
