"""OpenAI request bodies as pydantic models; unknown fields are ignored, as OpenAI does.

Types are strict, as OpenAI's are: `"stream": 0` or `"max_tokens": "8"` is a 400, not
quietly read as something else (an int still passes where a number is asked for).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class BudgetFields(_Lenient):
    """The thinking budget in tokens, by each name clients use: ours, vLLM's, llama.cpp's.
    Every API takes them, beside its own form (`params.thinking_budget` reconciles)."""

    thinking_budget: int | None = None
    thinking_token_budget: int | None = None
    reasoning_budget: int | None = None

    def budget_spellings(self) -> dict[str, int | None]:
        """The budget fields as the client named them."""
        return {
            "thinking_budget": self.thinking_budget,
            "thinking_token_budget": self.thinking_token_budget,
            "reasoning_budget": self.reasoning_budget,
        }


class SamplingFields(_Lenient):
    """Fields shared by chat and text completions."""

    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    repeat_penalty: float = Field(1.0, gt=0, le=10)
    logit_bias: dict[str, float] | None = None
    n: int = 1
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields, BudgetFields):
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


class CompletionRequest(SamplingFields):
    """POST /v1/completions: plain text in, text out. The prompt may also be token ids
    (one list, or a list holding one list), as evaluation harnesses send it."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False  # the prompt is repeated before the answer (with its logprobs)


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {...}}`."""

    error: ErrorDetail
