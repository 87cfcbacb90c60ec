"""OpenAI Responses, the answer half of the translation: the answer's typed parts
(`edge.chat.parts`) as output items and their stream events. `reasoning` for Qwen3's
thinking, `message` for the answer, `function_call` for each tool call.

Pure translation, no I/O: route.py feeds engine text in and streams or folds what
this returns.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from edge.chat.parts import AnswerSplitter, Part
from edge.chat.tools import ToolCall
from edge.engine import Finish, TokenEvent
from edge.server.logprobs import chat_entry
from edge.server.responses.request import ResponsesSpec


def usage(finish: Finish) -> dict[str, Any]:
    """Responses' usage object."""
    u = finish.usage
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def _thought(text: str) -> dict[str, Any]:
    """The reasoning item's content part: the thinking, as gpt-oss servers give it."""
    return {"type": "reasoning_text", "text": text}


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


class OutputWriter:
    """The answer's parts as Responses' output items and stream events, each event with
    the next `sequence_number`. The non-streaming answer runs the same writer and keeps
    only `response`, so both say the same.

    Whitespace at an item's edges is held back (and dropped at its end), so an answer
    never starts with the newlines after `</think>`, and no message is opened for the
    whitespace between tool calls; what the deltas say is exactly what `done` says.

    Qwen3's thinking is a `reasoning` item whose `summary` holds the whole thinking as one
    `summary_text` part, and whose `content` holds it again as `reasoning_text`. OpenAI's
    own models only ever give a summary, so that is where clients written for OpenAI
    look (the Vercel AI SDK, Codex CLI, LangChain); servers of open models give
    `content`, and clients written for them read that. There is no second model here to
    summarise, and a small model's thinking is short: the summary is the thinking itself.
    It streams once, as summary events: several clients treat summary and reasoning_text
    deltas alike, and would show the thinking twice if both came.
    """

    def __init__(self, spec: ResponsesSpec, model: str) -> None:
        self.spec, self.model = spec, model
        self.parts = AnswerSplitter(tools=spec.tools)
        self.output: list[dict[str, Any]] = []
        self.seq = 0
        self.response = self.snapshot("in_progress")
        self._item: dict[str, Any] | None = None  # the reasoning or message being written
        self._text = ""
        self._held = ""
        self.logprobs = spec.params.logprobs is not None
        self._pending: list[dict[str, Any]] = []  # answer tokens' entries not yet sent
        self._part_logprobs: list[dict[str, Any]] = []  # those of the open message

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """One stream event, numbered."""
        out = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return out

    def snapshot(self, status: str, **fields: Any) -> dict[str, Any]:
        """The response object as it stands."""
        return {
            "id": self.spec.id,
            "object": "response",
            "created_at": self.spec.created_at,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": self.model,
            "output": list(self.output),
            "usage": None,
            **self.spec.echo,
            **fields,
        }

    def start(self) -> list[dict[str, Any]]:
        """`response.created` and `response.in_progress`."""
        return [
            self.event("response.created", response=self.response),
            self.event("response.in_progress", response=self.response),
        ]

    def text(self, text: str) -> list[dict[str, Any]]:
        """Events for a piece of generated text."""
        return self._events(self.parts.feed(text))

    def token(self, event: TokenEvent) -> list[dict[str, Any]]:
        """Events for one engine event; with logprobs, an answer token's entry rides on
        the next text delta (reasoning tokens have none: OpenAI's are the output text's)."""
        if self.logprobs and not event.in_think:
            self._pending += map(chat_entry, event.logprobs)
        return self.text(event.text) if event.text else []

    def finish(self, finish: Finish) -> list[dict[str, Any]]:
        """Events for what was held back, the last item's end, and the final response."""
        out = self._events(self.parts.finish(finish.reason))
        done = finish.reason == "stop"
        out += self._close("completed" if done else "incomplete")
        fields: dict[str, Any] = {"usage": usage(finish), "completed_at": int(time.time())}
        if not done:
            fields["incomplete_details"] = {"reason": "max_output_tokens"}
        self.response = self.snapshot("completed" if done else "incomplete", **fields)
        kind = "response.completed" if done else "response.incomplete"
        return [*out, self.event(kind, response=self.response)]

    def failed(self, message: str, code: str) -> list[dict[str, Any]]:
        """The end of a stream that an error cut (after the status line was sent)."""
        out = self._close("incomplete")
        error = {"code": code, "message": message}
        self.response = self.snapshot("failed", error=error)
        return [*out, self.event("response.failed", response=self.response)]

    def _events(self, parts: list[Part]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in parts:
            if p.call is not None:
                self._pending.clear()  # the call's own tokens
                out += self._close("completed") + self._call(p.call)
            elif p.text:
                out += self._flow("reasoning" if p.kind == "reasoning" else "message", p.text)
        return out

    def _flow(self, kind: str, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._item is None or self._item["type"] != kind:
            text = text.lstrip()
            if not text:
                return []
            out += self._close("completed") + self._open(kind)
        joined = self._held + text
        body = joined.rstrip()
        self._held = joined[len(body) :]
        if body:
            self._text += body
            out.append(self._delta(body))
        return out

    def _open(self, kind: str) -> list[dict[str, Any]]:
        if kind == "reasoning":
            self._item = {"id": _id("rs_"), "type": "reasoning", "summary": [], "content": []}
        else:
            self._item = {"id": _id("msg_"), "type": "message", "role": "assistant", "content": []}
        self._text, self._held = "", ""
        self._part_logprobs = []
        added = {**self._item, "status": "in_progress"}
        part = "reasoning_summary_part" if kind == "reasoning" else "content_part"
        return [
            self.event("response.output_item.added", output_index=len(self.output), item=added),
            self.event(f"response.{part}.added", **self._where(), part=self._part("")),
        ]

    def _where(self) -> dict[str, Any]:
        assert self._item is not None
        # Thinking streams as the reasoning item's one summary part (see the class doc).
        index = "summary_index" if self._item["type"] == "reasoning" else "content_index"
        return {"item_id": self._item["id"], "output_index": len(self.output), index: 0}

    def _part(self, text: str) -> dict[str, Any]:
        assert self._item is not None
        if self._item["type"] == "reasoning":
            return {"type": "summary_text", "text": text}
        return {
            "type": "output_text",
            "text": text,
            "annotations": [],
            "logprobs": list(self._part_logprobs),
        }

    def _delta(self, text: str) -> dict[str, Any]:
        assert self._item is not None
        if self._item["type"] == "reasoning":
            return self.event("response.reasoning_summary_text.delta", **self._where(), delta=text)
        entries, self._pending = self._pending, []
        self._part_logprobs += entries
        return self.event(
            "response.output_text.delta", **self._where(), delta=text, logprobs=entries
        )

    def _close(self, status: str) -> list[dict[str, Any]]:
        if self._item is None:
            return []
        self._part_logprobs += self._pending  # dropped trailing whitespace's, if any
        self._pending = []
        where, text, part = self._where(), self._text, self._part(self._text)
        if self._item["type"] == "reasoning":
            item = {**self._item, "summary": [part], "content": [_thought(text)]}
            done = [
                self.event("response.reasoning_summary_text.done", **where, text=text),
                self.event("response.reasoning_summary_part.done", **where, part=part),
            ]
        else:
            item = {**self._item, "content": [part]}
            lps = part["logprobs"]
            done = [
                self.event("response.output_text.done", **where, text=text, logprobs=lps),
                self.event("response.content_part.done", **where, part=part),
            ]
        item["status"] = status
        self._item = None
        self.output.append(item)
        return [
            *done,
            self.event("response.output_item.done", output_index=where["output_index"], item=item),
        ]

    def _call(self, call: ToolCall) -> list[dict[str, Any]]:
        item_id, index = _id("fc_"), len(self.output)
        item = {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name}
        if call.name in self.spec.namespaces:
            item["namespace"] = self.spec.namespaces[call.name]
        added = {**item, "arguments": "", "status": "in_progress"}
        done = {**item, "arguments": call.arguments, "status": "completed"}
        where = {"item_id": item_id, "output_index": index}
        self.output.append(done)
        return [
            self.event("response.output_item.added", output_index=index, item=added),
            self.event("response.function_call_arguments.delta", **where, delta=call.arguments),
            self.event("response.function_call_arguments.done", **where, arguments=call.arguments),
            self.event("response.output_item.done", output_index=index, item=done),
        ]
