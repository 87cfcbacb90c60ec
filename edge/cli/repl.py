"""Terminal output: the streaming printer that `run` and `chat` share, and `run` itself.

Answer text goes to stdout as it is generated; reasoning is dimmed (on a terminal) and,
for `run`, sent to stderr so `edge-qwen run … > answer.txt` captures only the answer.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import TextIO

from edge.chat.conversation import Conversation, TurnOptions
from edge.chat.reasoning import Delta
from edge.cli.markdown import Highlighter
from edge.engine import Finish

DIM, RESET = "\x1b[2m", "\x1b[0m"


def colour_on(stream: TextIO) -> bool:
    """Whether to colour what goes to `stream`: a terminal, and NO_COLOR unset or empty."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


@dataclass
class Printer:
    """Writes deltas where they belong, dimming reasoning on a terminal."""

    out: TextIO
    think_out: TextIO | None  # None hides reasoning
    markdown: Highlighter | None = None  # colours the answer's Markdown (chat, on a tty)
    _kind: str = ""

    def delta(self, d: Delta) -> None:
        stream = self.out if d.kind == "answer" else self.think_out
        if stream is None:
            return
        if d.kind != self._kind and self._kind == "reasoning" and self.think_out is not None:
            self._write(self.think_out, "\n", dim=True)  # end the thinking paragraph
        self._kind = d.kind
        if d.kind == "answer" and self.markdown is not None:
            self._write(stream, self.markdown.feed(d.text), dim=False)
        else:
            self._write(stream, d.text, dim=d.kind == "reasoning")

    def end(self) -> None:
        if self._kind == "reasoning" and self.think_out is not None:
            self._write(self.think_out, "\n", dim=True)
        if self.markdown is not None:
            self._write(self.out, self.markdown.end(), dim=False)
        self._kind = ""

    @staticmethod
    def _write(stream: TextIO, text: str, *, dim: bool) -> None:
        if dim and colour_on(stream):
            text = f"{DIM}{text}{RESET}"
        stream.write(text)
        stream.flush()


def stats_line(f: Finish) -> str:
    """`42 tokens (12 thinking) · first token 0.08 s · 25.1 tok/s`, plus notes."""
    u = f.usage
    parts = [
        f"{u.completion_tokens} tokens"
        + (f" ({u.reasoning_tokens} thinking)" if u.reasoning_tokens else "")
    ]
    parts += [f"first token {f.ttft:.2f} s", f"{f.decode_tps:.1f} tok/s"]
    if u.cached_tokens:
        parts.append(f"{u.cached_tokens}/{u.prompt_tokens} prompt tokens reused")
    if f.reason not in ("stop",):
        parts.append(f"ended: {f.reason}")
    return " · ".join(parts + list(f.notes))


def run_once(
    conv: Conversation, text: str, opts: TurnOptions, *, show_thinking: bool, as_json: bool
) -> Finish:
    """One prompt, streamed (or one JSON object); returns the Finish event."""
    printer = Printer(sys.stdout, sys.stderr if show_thinking else None)
    answer: list[str] = []
    reasoning: list[str] = []
    finish: Finish | None = None
    for event in conv.send(text, opts):
        if isinstance(event, Finish):
            finish = event
        elif as_json:
            (answer if event.kind == "answer" else reasoning).append(event.text)
        else:
            printer.delta(event)
    assert finish is not None
    if as_json:
        print(
            json.dumps(
                _as_dict(conv, "".join(reasoning), "".join(answer), finish), ensure_ascii=False
            )
        )
    else:
        printer.end()
        sys.stdout.write("\n")
    return finish


def _as_dict(conv: Conversation, reasoning: str, answer: str, f: Finish) -> dict[str, object]:
    u = f.usage
    return {
        "model": conv.model_name,
        "reasoning": reasoning,
        "answer": answer,
        "finish_reason": f.reason,
        "usage": {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "cached_tokens": u.cached_tokens,
        },
        "timings": {
            "ttft_s": round(f.ttft, 4),
            "total_s": round(f.total, 4),
            "decode_tps": round(f.decode_tps, 2),
        },
        "notes": list(f.notes),
    }
