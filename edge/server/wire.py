"""What the APIs' request models share: the lenient base, and the fields several APIs take.

Unknown fields are ignored, as OpenAI and Anthropic do. Types are strict, as OpenAI's are:
`"stream": 0` or `"max_tokens": "8"` is a 400, not quietly read as something else (an int
still passes where a number is asked for).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.config import parse_duration
from edge.errors import ParamError


class Lenient(BaseModel):
    """The base of every request model: unknown fields ignored, types strict."""

    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(Lenient):
    include_usage: bool = False


class ResponseFormat(Lenient):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class KeepAliveField(Lenient):
    """How long the model stays loaded after this request, as Ollama spells it (`5m`,
    seconds, `0`: sleep once idle, negative: for ever); every API takes it."""

    keep_alive: int | float | str | None = None

    def keep_alive_s(self) -> float | None:
        """Seconds (inf: for ever), or None when not given; a bad value is a 400."""
        if self.keep_alive is None:
            return None
        try:
            seconds = parse_duration(self.keep_alive)
        except ValueError as exc:
            raise ParamError("keep_alive", str(exc)) from None
        # Negative, or past any laptop's uptime (a year): for ever.
        return math.inf if seconds < 0 or seconds > 3.2e7 else seconds


class BudgetFields(Lenient):
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


class SamplingFields(Lenient):
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
