"""What a finished generation reports in OpenAI's dialect: usage and the finish reason (chat
and text completions; Anthropic and Responses have their own shapes in their folders)."""

from __future__ import annotations

from typing import Any

from edge.engine import Finish


def usage(finish: Finish) -> dict[str, Any]:
    """OpenAI usage, with reasoning and cached tokens in the details objects."""
    u = finish.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def openai_finish(reason: str) -> str:
    """OpenAI's finish reason for the engine's ("cancelled" and "length" both cut the text)."""
    return "stop" if reason == "stop" else "length"
