"""OpenAI chat completions' request body (`POST /v1/chat/completions`), with every thinking
dialect clients send; the fields it shares with other APIs are wire.py's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edge.server.wire import BudgetFields, KeepAliveField, Lenient, ResponseFormat, SamplingFields


class Message(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class ChatCompletionRequest(SamplingFields, BudgetFields, KeepAliveField):
    """POST /v1/chat/completions, with every thinking dialect clients send."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    enable_thinking: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    think: bool | None = None
    return_reasoning: bool = True
    reasoning_format: Literal["separate", "inline", "hidden", "none", "deepseek"] | None = None
    loop_guard: bool = True  # edge-qwen extension: end runaway repetition
