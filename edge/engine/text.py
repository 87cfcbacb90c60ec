"""The text side of one generation, with no llama.cpp calls: sampled tokens in, events out.

`TextState` decodes bytes, holds back what could start a stop string, tracks the think
block and runs the thinking budget and the loop guard. The scheduler drives it on its own
thread, because its answers (a stop string matched, a loop to end, a think block to
close) decide what the next decode holds.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Sequence
from typing import Protocol

from edge.engine.seam import Event, Finish, FinishReason, Job, TokenEvent, Usage

CLOSE_THINK = "\n</think>\n\n"


class Pieces(Protocol):
    """What TextState needs of the vocabulary."""

    think_open: int | None
    think_close: int | None
    close_think: list[int]  # the tokens of CLOSE_THINK

    def piece(self, token: int) -> bytes:
        """The bytes of one token."""
        ...


class TextState:
    """Text, think block, budget and loop guard of one job (see the module docstring)."""

    def __init__(self, vocab: Pieces, job: Job, start: float | None = None) -> None:
        self.v, self.thinking, self.in_think = vocab, job.thinking, job.in_think
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = [s for s in job.params.stop if s]
        self.pending = ""  # decoded text held back while it could start a stop string
        self.matched: str | None = None  # the stop string that ended the answer, if one did
        self.generated: list[int] = []
        self.section: list[int] = []  # the current think block or answer, for the loop guard
        self.reasoning = 0
        self.notes: list[str] = []
        self.start = time.perf_counter() if start is None else start
        self.first: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def emit(self, token: int) -> tuple[TokenEvent, bool]:
        """The event for a sampled token, and whether a stop string ended the answer."""
        now = time.perf_counter() - self.start
        if self.first is None:
            self.first = now
        self.generated.append(token)
        self.section.append(token)
        if token == self.v.think_open:
            self.in_think, self.section = True, [token]
        counted_in_think = self.in_think
        if token == self.v.think_close:
            self.in_think, self.section = False, []
        if counted_in_think:
            self.reasoning += 1
        text = self.decoder.decode(self.v.piece(token))
        if not self.stops:
            return TokenEvent(text, token, counted_in_think, now), False
        out, self.pending, self.matched = cut_stop(self.pending + text, self.stops)
        return TokenEvent(out, token, counted_in_think, now), self.matched is not None

    def guard(self) -> str | None:
        """'close' to end a runaway think block, 'end' to end a looping answer, None to go on."""
        t = self.thinking
        if self.in_think and t.budget is not None and self.reasoning >= t.budget:
            self.notes.append(f"thinking budget of {t.budget} tokens reached")
            return "close"
        if t.loop_guard and loops(self.section, t.loop_max_ngram, t.loop_min_span):
            if self.in_think:
                self.notes.append("loop guard closed a repeating think block")
                return "close"
            self.notes.append("loop guard ended a repeating answer")
            return "end"
        return None

    def force_close(self) -> tuple[list[int], TokenEvent]:
        """Close the think block ourselves: the tokens to evaluate, and the event to show."""
        self.in_think, self.section = False, []
        text = self.pending + self.decoder.decode(CLOSE_THINK.encode())
        self.pending = ""
        return self.v.close_think, TokenEvent(text, None, False, self.elapsed())

    def finish(self, reason: FinishReason, prompt_tokens: int, cached: int) -> list[Event]:
        """The held-back tail (if any) and the Finish event."""
        out: list[Event] = []
        tail = self.pending + self.decoder.decode(b"", final=True)
        self.pending = ""
        if tail:
            out.append(TokenEvent(tail, None, self.in_think, self.elapsed()))
        usage = Usage(prompt_tokens, cached, len(self.generated), self.reasoning)
        total = self.elapsed()
        first = self.first if self.first is not None else total
        matched = self.matched if reason == "stop" else None
        out.append(Finish(reason, usage, first, total, tuple(self.notes), matched))
        return out


def cut_stop(text: str, stops: list[str]) -> tuple[str, str, str | None]:
    """Split `text` into (emit now, hold back, the stop string it ended on or None) for the
    given stop strings; of several found, the one that starts first ends it."""
    if not stops:
        return text, "", None
    hits = [(text.find(s), i) for i, s in enumerate(stops) if s in text]
    if hits:
        at, first = min(hits)
        return text[:at], "", stops[first]
    hold = 0
    for s in stops:  # keep any tail that could be the start of a stop string
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold], text[len(text) - hold :], None


def loops(tokens: list[int], max_ngram: int, min_span: int) -> bool:
    """True when the tail of `tokens` is one n-gram repeated over at least `min_span` tokens."""
    if len(tokens) < min_span or len(tokens) % 4:  # checked every 4th token: cheap enough
        return False
    for n in range(1, max_ngram + 1):
        reps = max(3, -(-min_span // n))
        span = n * reps
        if span > len(tokens):
            break
        tail = tokens[-span:]
        unit = tail[:n]
        if all(tail[i : i + n] == unit for i in range(n, span, n)):
            return True
    return False


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
