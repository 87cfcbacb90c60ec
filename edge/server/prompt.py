"""The prompt every chat-like API renders: OpenAI-style messages and function tools through
the model's chat template, checked as request text. Chat completions, Anthropic Messages
and Responses each translate their request into these first."""

from __future__ import annotations

from typing import Any

from edge.chat.template import ChatTemplate
from edge.server.params import check_text


def prompt_text(
    template: ChatTemplate,
    messages: list[dict[str, Any]],
    *,
    thinking: bool,
    tools: list[dict[str, Any]] | None,
) -> str:
    """The prompt for OpenAI-style chat messages and function tools: what every chat-like
    API's request (chat completions, Anthropic Messages) is translated into first."""
    text = template.render(messages, enable_thinking=thinking, tools=tools)
    check_text(text, "messages")
    return text
