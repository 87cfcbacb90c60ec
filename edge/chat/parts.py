"""One answer as typed parts: reasoning, answer text, tool calls.

Every API the server speaks (chat completions, Responses, Anthropic Messages) renders the
same stream of parts in its own shape; this is where engine text becomes that stream.
Reasoning is split off first (`reasoning.ThinkSplitter`), then, when tools were offered,
Qwen3's `<tool_call>` blocks are parsed out of the answer (`tools.ToolCallSplitter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.chat.reasoning import Delta, ThinkSplitter
from edge.chat.tools import ToolCall, ToolCallSplitter, ToolDelta

PartKind = Literal["reasoning", "text", "tool_call"]


@dataclass(frozen=True)
class Part:
    """A piece of reasoning or answer text, or one complete tool call."""

    kind: PartKind
    text: str = ""
    call: ToolCall | None = None


class AnswerSplitter:
    """Engine text in, `Part`s out, as soon as each can be told apart.

    Call `feed` with each piece of generated text and `finish` once with the engine's
    finish reason. `in_think`: the prompt already opened a think block.
    """

    def __init__(self, *, tools: bool, in_think: bool = False) -> None:
        self.think = ThinkSplitter(in_think=in_think)
        self.tools = ToolCallSplitter() if tools else None
        self.calls: list[ToolCall] = []

    def feed(self, text: str) -> list[Part]:
        """Parts for the next piece of generated text."""
        return self._parts(self.think.feed(text))

    def finish(self, reason: str) -> list[Part]:
        """Parts for what was held back; `reason` is the engine's finish reason."""
        parts = self._parts(self.think.finish("stop" if reason == "stop" else "length"))
        if self.tools is not None:
            parts += self._tool_parts(self.tools.finish(cut=reason != "stop"))
        return parts

    @property
    def cut_call(self) -> bool:
        """A tool call was cut short by the end of the stream and dropped: the answer's
        finish reason must say it was cut ("length"), not that it called tools."""
        return self.tools is not None and self.tools.dropped

    def _parts(self, deltas: list[Delta]) -> list[Part]:
        out: list[Part] = []
        for d in deltas:
            if d.kind == "reasoning":
                out.append(Part("reasoning", d.text))
            elif self.tools is not None:
                out += self._tool_parts(self.tools.feed(d.text))
            else:
                out.append(Part("text", d.text))
        return out

    def _tool_parts(self, deltas: list[ToolDelta]) -> list[Part]:
        out: list[Part] = []
        for d in deltas:
            if d.call is None:
                out.append(Part("text", d.text))
            else:
                self.calls.append(d.call)
                out.append(Part("tool_call", call=d.call))
        return out
