"""OpenAI chat completions, the answer half of the translation: engine text → deltas and
chunks (reasoning apart, in the format asked for; tool calls parsed), and timings.

Pure translation, no I/O: route.py holds the route and feeds engine events in; it streams
or folds what this returns. The request half is request.py's.
"""

from __future__ import annotations

import json
from typing import Any

from edge.chat.parts import AnswerSplitter, Part
from edge.chat.tools import ToolCall
from edge.engine import Finish
from edge.server.chat_completions.request import ChatSpec
from edge.server.sse import DATA, END, dumps
from edge.server.usage import openai_finish


class ChunkWriter:
    """Turns the answer's parts into OpenAI deltas: reasoning apart, tool calls whole."""

    def __init__(self, spec: ChatSpec, model: str) -> None:
        self.spec, self.model = spec, model
        self.parts = AnswerSplitter(tools=spec.tools)
        self.content = ""
        self.reasoning = ""
        self.tool_calls: list[dict[str, Any]] = []
        self._inline_open = False

    @property
    def calls(self) -> int:
        """Tool calls so far."""
        return len(self.tool_calls)

    def text(self, text: str) -> list[dict[str, Any]]:
        """Deltas for a piece of generated text."""
        return self._deltas(self.parts.feed(text))

    def finish(self, reason: str) -> list[dict[str, Any]]:
        """Deltas for what the splitters still held at the end."""
        return self._deltas(self.parts.finish(reason))

    def _deltas(self, parts: list[Part]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in parts:
            if p.kind == "reasoning":
                out += self._reasoning(p.text)
            elif p.call is not None:
                out.append(self._tool_call(p.call))
            else:
                out += self._content(p.text)
        return out

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        self.reasoning += text
        if not self.spec.return_reasoning or self.spec.reasoning_format == "hidden":
            return []
        if self.spec.reasoning_format == "inline":  # <think>…</think> kept in content
            if not self._inline_open:
                text, self._inline_open = "<think>\n" + text, True
            self.content += text
            return [{"content": text}]
        return [{"reasoning_content": text, "reasoning": text}]

    def _content(self, text: str) -> list[dict[str, Any]]:
        if self._inline_open:
            text, self._inline_open = "\n</think>\n\n" + text, False
        self.content += text
        return [{"content": text}]

    def _tool_call(self, call: ToolCall) -> dict[str, Any]:
        function = {"name": call.name, "arguments": call.arguments}
        entry = {"id": call.id, "type": "function", "function": function}
        self.tool_calls.append(entry)
        return {"tool_calls": [{"index": len(self.tool_calls) - 1, **entry}]}

    def finish_reason(self, reason: str) -> str:
        """OpenAI's finish reason for the engine's."""
        return "tool_calls" if self.calls and not self.parts.cut_call else openai_finish(reason)


def timings(finish: Finish) -> dict[str, float]:
    """llama-server-style timings, for people tuning their setup."""
    u = finish.usage
    new = u.prompt_tokens - u.cached_tokens
    gen_ms = (finish.total - finish.ttft) * 1000
    return {
        "prompt_n": new,
        "prompt_ms": round(finish.ttft * 1000, 2),
        "prompt_per_second": round(new / finish.ttft, 2) if finish.ttft > 0 else 0.0,
        "predicted_n": u.completion_tokens,
        "predicted_ms": round(gen_ms, 2),
        "predicted_per_second": round(finish.decode_tps, 2),
    }


_quote = json.encoder.encode_basestring  # a str as a JSON string, the way dumps writes it


class ChunkBytes:
    """`chat.completion.chunk` events as SSE bytes, for the per-token path: the fixed part
    of the chunk is serialised once per request, so a token costs a string quote and a
    join. Byte for byte what `dumps(chunk(spec, model, delta))` framed as SSE gives."""

    def __init__(self, spec: ChatSpec, model: str) -> None:
        head = dumps(chunk(spec, model, {}))
        cut = head.index('"delta":') + len('"delta":')
        self._prefix = DATA + head[:cut].encode()
        self._suffix = head[cut + 2 :].encode() + END  # after the empty delta's "{}"

    def delta(self, d: dict[str, Any]) -> bytes:
        """One delta's chunk."""
        if len(d) == 1 and "content" in d:
            body = '{"content":' + _quote(d["content"]) + "}"
        elif (
            len(d) == 2
            and "reasoning_content" in d
            and d.get("reasoning") == d["reasoning_content"]
        ):
            text = _quote(d["reasoning_content"])
            body = '{"reasoning_content":' + text + ',"reasoning":' + text + "}"
        else:
            body = dumps(d)
        return self._prefix + body.encode() + self._suffix


def chunk(
    spec: ChatSpec, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    return {
        "id": spec.id,
        "object": "chat.completion.chunk",
        "created": spec.created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
