"""OpenAI text completions' request body (`POST /v1/completions`); the sampling fields it
shares with chat completions are wire.py's."""

from __future__ import annotations

from edge.server.wire import KeepAliveField, SamplingFields


class CompletionRequest(SamplingFields, KeepAliveField):
    """POST /v1/completions: plain text in, text out. The prompt may also be token ids
    (one list, or a list holding one list), as evaluation harnesses send it."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False  # the prompt is repeated before the answer (with its logprobs)
