"""Split Qwen3 output into reasoning and answer as it streams, one piece of text at a time.

Qwen3 writes ``<think>…</think>`` before its answer. The pieces arrive from a detokenizer
in arbitrary cuts (``"<thi"``, ``"nk>"``), so the splitter holds back only what could
still turn into a marker, plus the newline run a closing marker would strip, and emits
everything else at once. The rules match what Qwen3's chat template does with a message:

- ``<think>`` opens reasoning only before any non-whitespace text; whitespace before it is
  dropped. Later ``<think>`` text, and a ``</think>`` that never had an opening, is answer.
- ``</think>`` closes reasoning once; any later ``</think>`` is answer text.
- Reasoning loses its leading and trailing newlines (the template's ``.strip('\\n')``);
  the answer after ``</think>`` loses its leading newlines (``.lstrip('\\n')``).

Pure text in, :class:`Delta` out: no llama.cpp here, so the rules are table-tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OPEN = "<think>"
CLOSE = "</think>"

DeltaKind = Literal["reasoning", "answer"]

# Where the splitter is in the stream.
_START = "start"  # nothing but whitespace so far: a <think> may still open
_THINK_LEAD = "think_lead"  # just inside <think>: newlines here are dropped
_THINK = "think"  # inside reasoning
_AFTER = "after"  # just after </think>: newlines here are dropped
_ANSWER = "answer"  # answer text; no marker means anything any more


@dataclass(frozen=True)
class Delta:
    """A piece of output text, either reasoning (inside ``<think>``) or answer."""

    kind: DeltaKind
    text: str


class ThinkSplitter:
    """Turn streamed Qwen3 output text into reasoning and answer :class:`Delta` records.

    Call :meth:`feed` with each piece as it arrives and :meth:`finish` once at the end.
    ``in_think=True`` is for prompts whose generation prompt already opened ``<think>``,
    so the output starts inside the reasoning.
    """

    def __init__(self, *, in_think: bool = False) -> None:
        self._state = _THINK_LEAD if in_think else _START
        self._saw_think = in_think
        self._buf = ""
        self._done = False

    @property
    def in_think(self) -> bool:
        """True while the stream is inside a think block (after finish: if it ended there)."""
        return self._state in (_THINK_LEAD, _THINK)

    @property
    def saw_think(self) -> bool:
        """True once a think block has opened (in the output or, with in_think, the prompt)."""
        return self._saw_think

    @property
    def pending(self) -> str:
        """The text held back because a marker or a closing newline run may follow it."""
        return self._buf

    def feed(self, text: str) -> list[Delta]:
        """Take the next piece of output; return what can already be said about it."""
        if self._done:
            raise RuntimeError("ThinkSplitter.feed() after finish()")
        self._buf += text
        out: list[Delta] = []
        while self._step(out):
            pass
        return out

    def finish(self, reason: str) -> list[Delta]:
        """End the stream and flush what was held back, as the kind it was.

        ``reason`` is the finish reason: ``"length"`` means the output was cut off, so the
        held text is flushed verbatim (a cut-off think block stays reasoning). Any other
        reason (``"stop"``) means the model ended, so reasoning that never closed still
        loses its trailing newlines, as a closed block would.
        """
        if self._done:
            raise RuntimeError("ThinkSplitter.finish() called twice")
        self._done = True
        out: list[Delta] = []
        held, self._buf = self._buf, ""
        if self._state == _START:
            # Never became a <think>: whitespace and a partial marker are answer text.
            _emit(out, "answer", held)
        elif self._state == _THINK:
            _emit(out, "reasoning", held if reason == "length" else held.rstrip("\n"))
        return out

    def _step(self, out: list[Delta]) -> bool:
        """Consume what the current state can from the buffer; True to run again."""
        if self._state == _START:
            return self._step_start()
        if self._state in (_THINK_LEAD, _AFTER):
            self._buf = self._buf.lstrip("\n")
            if not self._buf:
                return False
            self._state = _THINK if self._state == _THINK_LEAD else _ANSWER
            return True
        if self._state == _THINK:
            return self._step_think(out)
        _emit(out, "answer", self._buf)
        self._buf = ""
        return False

    def _step_start(self) -> bool:
        body = self._buf.lstrip()
        if body.startswith(OPEN):
            self._buf = body[len(OPEN) :]
            self._state = _THINK_LEAD
            self._saw_think = True
            return True
        if not body or OPEN.startswith(body):
            return False  # all whitespace, or a partial <think>: wait for more
        self._state = _ANSWER
        return True

    def _step_think(self, out: list[Delta]) -> bool:
        buf = self._buf
        end = buf.find(CLOSE)
        if end >= 0:
            _emit(out, "reasoning", buf[:end].rstrip("\n"))
            self._buf = buf[end + len(CLOSE) :]
            self._state = _AFTER
            return True
        # CLOSE has one "<", so only the last "<" can start a partial marker.
        cut = buf.rfind("<")
        if cut < 0 or not CLOSE.startswith(buf[cut:]):
            cut = len(buf)
        # Newlines just before a possible </think> would be stripped if it comes.
        keep = len(buf[:cut].rstrip("\n"))
        _emit(out, "reasoning", buf[:keep])
        self._buf = buf[keep:]
        return False


def _emit(out: list[Delta], kind: DeltaKind, text: str) -> None:
    """Append a delta, merging it into the last one of the same kind; skip empty text."""
    if not text:
        return
    if out and out[-1].kind == kind:
        out[-1] = Delta(kind, out[-1].text + text)
    else:
        out.append(Delta(kind, text))


def split_text(text: str, *, in_think: bool = False) -> tuple[str, str]:
    """Split a whole, finished output into ``(reasoning, answer)`` with the streaming rules."""
    splitter = ThinkSplitter(in_think=in_think)
    deltas = splitter.feed(text) + splitter.finish("stop")
    reasoning = "".join(d.text for d in deltas if d.kind == "reasoning")
    answer = "".join(d.text for d in deltas if d.kind == "answer")
    return reasoning, answer
