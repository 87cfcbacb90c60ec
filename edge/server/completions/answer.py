"""Text completions, the answer half: `text_completion` objects (chunks when streamed), the
echoed prompt with its logprobs, and usage without chat's details objects. Pure
translation, no I/O."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edge.engine import Finish, SamplingParams, TokenEvent
from edge.server import logprobs
from edge.server.usage import usage


@dataclass
class TextAnswer:
    """What every chunk of one answer shares, and the answer's shape."""

    model: str
    echo: bool = False
    prompt_text: str = ""  # "" when the prompt came as token ids
    id: str = field(default_factory=lambda: "cmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def body(
        self, text: str, finish: str | None, lps: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A `text_completion` object (a chunk when streamed) holding `text`."""
        choice = {"index": 0, "text": text, "logprobs": lps, "finish_reason": finish}
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }


class Echo:
    """The text and logprobs an answer has written so far: the prompt first, with echo."""

    def __init__(self, answer: TextAnswer, params: SamplingParams) -> None:
        self.answer, self.want = answer, params.logprobs is not None
        self.offset = 0  # characters written, for the tokens' text_offset

    def head(self) -> str:
        """The echoed prompt when it is known before the engine reads it (plain text)."""
        if not (self.answer.echo and self.answer.prompt_text and not self.want):
            return ""
        self.offset = len(self.answer.prompt_text)
        return self.answer.prompt_text

    def piece(self, event: TokenEvent) -> tuple[str, dict[str, Any] | None]:
        """An event's text and logprobs; the prompt's event gives the echoed prompt."""
        text = event.text
        if event.token is None and not text and event.logprobs:  # the prompt's
            text = self.answer.prompt_text or b"".join(lp.piece for lp in event.logprobs).decode(
                "utf-8", errors="replace"
            )
        lps = logprobs.legacy(event.logprobs, self.offset) if self.want else None
        self.offset += len(text)
        return text, lps


def plain_usage(finish: Finish) -> dict[str, Any]:
    """Chat's usage without the details objects, as OpenAI's text completions give it."""
    return {k: v for k, v in usage(finish).items() if not k.endswith("details")}
