"""Anthropic Messages API request bodies as pydantic models (POST /v1/messages and
/v1/messages/count_tokens); the error object is errors.py's.

As in wire.py, types are strict and unknown fields ignored (`cache_control`, `citations`,
`metadata`, `service_tier`… are accepted and mean nothing here). Content blocks are told
apart by their `type`; image and document blocks validate so that the translation can
refuse them by name (Qwen3-0.6B reads text only) rather than as an unknown tag.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from edge.server.wire import BudgetFields, KeepAliveField, Lenient


class TextBlock(Lenient):
    type: Literal["text"]
    text: str


class MediaBlock(Lenient):
    """An image or document: accepted by the schema, refused by the translation."""

    type: Literal["image", "document"]


class ToolUseBlock(Lenient):
    """A tool call the assistant made in an earlier turn."""

    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Lenient):
    """A tool's answer, in the user turn after the call."""

    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | MediaBlock, Field(discriminator="type")]] = ""
    is_error: bool = False


class ThinkingBlock(Lenient):
    """Reasoning of an earlier assistant turn, as the API answered it."""

    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(Lenient):
    type: Literal["redacted_thinking"]
    data: str = ""


ContentBlock = Annotated[
    TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock | MediaBlock,
    Field(discriminator="type"),
]


class MessageParam(Lenient):
    """A turn. `system` messages between turns are a newer addition (Claude Code sends
    them); Qwen3's template lays them out in place."""

    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class Tool(Lenient):
    """A client tool: a function the model may call, its arguments a JSON schema."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(Lenient):
    """`enabled` (with a budget), `adaptive` (the model decides: thinking on, no budget),
    or `disabled`."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=0)


class CountTokensRequest(Lenient):
    """POST /v1/messages/count_tokens: a Messages request without the sampling fields."""

    model: str | None = None
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest, BudgetFields, KeepAliveField):
    """POST /v1/messages."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None
