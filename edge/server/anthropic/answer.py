"""Anthropic Messages, the answer half of the translation: answer parts → Anthropic content
blocks and stream events, usage and stop reasons.

Pure translation, no I/O: route.py holds the routes and feeds engine events in; it
streams or folds what `BlockWriter` returns. The request half is request.py's.
"""

from __future__ import annotations

import json
from typing import Any

from edge.chat.parts import AnswerSplitter, Part
from edge.chat.tools import ToolCall
from edge.engine import Finish, Usage
from edge.server.anthropic.request import MessagesSpec

# --- the answer ---------------------------------------------------------------------------


def tool_use_id(call: ToolCall) -> str:
    """Anthropic's id for a call: `toolu_` where the parser wrote `call_`."""
    return "toolu_" + call.id.removeprefix("call_")


class BlockWriter:
    """Turns the answer's parts into Anthropic content blocks and the stream events that
    build them: a thinking or text block stays open while parts of its kind follow; a
    tool call is a whole tool_use block. `content` holds the blocks as they grow, so the
    folded answer is exactly what the events spell out."""

    def __init__(self, spec: MessagesSpec) -> None:
        self.spec = spec
        self.parts = AnswerSplitter(tools=spec.tools)
        self.content: list[dict[str, Any]] = []
        self._open: str | None = None  # the kind of the open block: "thinking" or "text"

    def text(self, text: str) -> list[dict[str, Any]]:
        """Events for a piece of generated text."""
        return self._events(self.parts.feed(text))

    def finish(self, reason: str) -> list[dict[str, Any]]:
        """Events for what the splitters still held at the end, and the last block's stop."""
        return self._events(self.parts.finish(reason)) + self._close()

    def stop_reason(self, finish: Finish) -> str:
        """Anthropic's stop reason for the engine's finish."""
        if not self.parts.cut_call and any(b["type"] == "tool_use" for b in self.content):
            return "tool_use"
        if finish.reason == "length" and self.spec.context_bound:
            return "model_context_window_exceeded"
        if finish.reason != "stop":  # "length", or "cancelled" by a shutdown: cut short
            return "max_tokens"
        return "end_turn" if finish.stop_sequence is None else "stop_sequence"

    def _events(self, parts: list[Part]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in parts:
            if part.call is not None:
                out += self._tool_use(part.call)
            elif part.text:
                out += self._delta("thinking" if part.kind == "reasoning" else "text", part.text)
        return out

    def _delta(self, kind: str, text: str) -> list[dict[str, Any]]:
        out = []
        if self._open != kind:
            out += self._close()
            block = {"type": "thinking", "thinking": "", "signature": ""}
            out.append(self._start(block if kind == "thinking" else {"type": "text", "text": ""}))
            self._open = kind
        self.content[-1][kind] += text
        delta = {"type": f"{kind}_delta", kind: text}
        out.append({"type": "content_block_delta", "index": len(self.content) - 1, "delta": delta})
        return out

    def _tool_use(self, call: ToolCall) -> list[dict[str, Any]]:
        out = self._close()
        arguments = call.arguments_object()
        block = {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}}
        out.append(self._start(block))
        block["input"] = arguments
        delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
        index = len(self.content) - 1
        out.append({"type": "content_block_delta", "index": index, "delta": delta})
        out.append({"type": "content_block_stop", "index": index})
        return out

    def _start(self, block: dict[str, Any]) -> dict[str, Any]:
        self.content.append(block)
        start = {"type": "content_block_start", "index": len(self.content) - 1}
        return {**start, "content_block": dict(block)}  # a copy: the block grows later

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": len(self.content) - 1}]


def usage(u: Usage) -> dict[str, int]:
    """Anthropic usage: `input_tokens` are those not read from the cache."""
    return {
        "input_tokens": u.prompt_tokens - u.cached_tokens,
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_tokens,
    }


def message(
    spec: MessagesSpec,
    model: str,
    content: list[dict[str, Any]],
    u: Usage,
    stop: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    """The message object: the whole answer, or with no content and no stop reason yet the
    head of a stream (`message_start`). `stop` is (stop_reason, stop_sequence)."""
    return {
        "id": spec.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop[0],
        "stop_sequence": stop[1],
        "usage": usage(u),
    }


def stop_of(writer: BlockWriter, finish: Finish) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of a finished answer."""
    reason = writer.stop_reason(finish)
    return reason, finish.stop_sequence if reason == "stop_sequence" else None
