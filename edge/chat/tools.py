"""Find Qwen3's tool calls in its answer text as it streams, one piece of text at a time.

Qwen3 calls a tool by writing, in its answer, blocks like::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

several in a row for parallel calls, possibly after some plain text. The markers are single
tokens, but the text arrives in arbitrary cuts (``"<tool_"``, ``"call>\\n{"``), so the
splitter holds back only what could still become ``<tool_call>`` and passes the rest on as
content at once. The rules:

- Text between ``<tool_call>`` and ``</tool_call>`` is a JSON object with a string ``"name"``
  and ``"arguments"`` (an object, a JSON string, or absent). A ``</tool_call>`` or
  ``<tool_call>`` inside a JSON string value is part of the value, not a marker.
- A block that is not such an object is given back as content, tags and all, so the user
  sees what the model wrote instead of losing it.
- A ``<tool_call>`` inside a block ends that block as if the stream had stopped there, and
  so does the end of the stream: a complete JSON call still counts (``</tool_call>`` may
  have been a stop token); anything else is content, unless the stream was cut short
  (max_tokens): a call cut before its JSON completed is dropped, not shown as markup.
- Whitespace after a call, up to the next ``<tool_call>`` or the end, is dropped: it is the
  layout between parallel calls, not something the model said.

Pure text in, :class:`ToolDelta` out: no llama.cpp here, so the rules are table-tested alone.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

ToolDeltaKind = Literal["content", "tool_call"]

# Where the splitter is in the stream.
_TEXT = "text"  # plain answer text: only a partial <tool_call> is held back
_BLOCK = "block"  # inside <tool_call>: everything is held until the block ends
_GAP = "gap"  # just after a call: whitespace is held, and dropped if a block or the end follows


@dataclass(frozen=True)
class ToolCall:
    """One function call, shaped like the OpenAI API's: ``arguments`` is a JSON string."""

    id: str
    name: str
    arguments: str

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as an object, as Anthropic's `input` and Ollama's `arguments` are
        ({} if they are not one)."""
        try:
            parsed = json.loads(self.arguments)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


@dataclass(frozen=True)
class ToolDelta:
    """Either answer text to show as content, or one complete call and its index in the reply."""

    kind: ToolDeltaKind
    text: str = ""
    call: ToolCall | None = None
    index: int = 0


def new_call_id() -> str:
    """A fresh OpenAI-style call id: ``call_`` and 24 random hex digits."""
    return "call_" + secrets.token_hex(12)


class ToolCallSplitter:
    """Turn streamed Qwen3 answer text into content and tool-call :class:`ToolDelta` records.

    Call :meth:`feed` with each piece as it arrives and :meth:`finish` once at the end.
    Feed it the answer only: reasoning is split off first (:mod:`edge.chat.reasoning`).
    """

    def __init__(self) -> None:
        self._state = _TEXT
        self._buf = ""  # held back: a partial marker, a gap's whitespace, or a block's body
        self._scan = _BodyScanner()
        self._calls = 0
        self._done = False
        self.dropped = False  # a call cut short by the end of the stream was dropped

    @property
    def called(self) -> bool:
        """True once at least one tool call has been emitted."""
        return self._calls > 0

    @property
    def in_block(self) -> bool:
        """True while the stream is inside a ``<tool_call>`` block that has not ended."""
        return self._state == _BLOCK

    @property
    def pending(self) -> str:
        """The text held back: a partial marker (after a call, whitespace too) or a block body."""
        return self._buf

    def feed(self, text: str) -> list[ToolDelta]:
        """Take the next piece of answer text; return what can already be said about it."""
        if self._done:
            raise RuntimeError("ToolCallSplitter.feed() after finish()")
        self._buf += text
        out: list[ToolDelta] = []
        while self._step(out):
            pass
        return out

    def finish(self, cut: bool = False) -> list[ToolDelta]:
        """End the stream: settle an unterminated block and flush any held-back text.

        `cut`: the stream was cut short (max_tokens, a full context, a cancel). A block it
        cut before its JSON completed is then a call the model had not finished writing:
        it is dropped (`dropped` says so), never given back as `<tool_call>` markup."""
        if self._done:
            raise RuntimeError("ToolCallSplitter.finish() called twice")
        self._done = True
        out: list[ToolDelta] = []
        held, self._buf = self._buf, ""
        if self._state == _BLOCK and cut and _parse_call(held) is None:
            self.dropped = True
        elif self._state == _BLOCK:
            self._end_block(out, held, closed=False)
        elif self._state == _TEXT or held.strip():
            _emit(out, held)  # a partial marker that never completed is plain text
        return out

    def _step(self, out: list[ToolDelta]) -> bool:
        """Consume what the current state can from the buffer; True to run again."""
        if self._state == _BLOCK:
            return self._step_block(out)
        return self._step_text(out)

    def _step_text(self, out: list[ToolDelta]) -> bool:
        buf = self._buf
        start = buf.find(OPEN)
        if start >= 0:
            before = buf[:start]
            if self._state == _TEXT or before.strip():
                _emit(out, before)
            self._buf = buf[start + len(OPEN) :]
            self._open_block()
            return True
        # OPEN has one "<", so only the last "<" can start a partial marker.
        cut = buf.rfind("<")
        if cut < 0 or not OPEN.startswith(buf[cut:]):
            cut = len(buf)
        if self._state == _GAP:
            if not buf[:cut].strip():
                return False  # still only layout after a call: wait for what follows
            self._state = _TEXT
        _emit(out, buf[:cut])
        self._buf = buf[cut:]
        return False

    def _step_block(self, out: list[ToolDelta]) -> bool:
        found = self._scan.find(self._buf)
        if found is None:
            return False
        at, marker = found
        body, self._buf = self._buf[:at], self._buf[at + len(marker) :]
        self._end_block(out, body, closed=marker == CLOSE)
        if marker == OPEN:
            self._open_block()  # the model began the next call without closing this one
        return True

    def _open_block(self) -> None:
        self._state = _BLOCK
        self._scan = _BodyScanner()

    def _end_block(self, out: list[ToolDelta], body: str, *, closed: bool) -> None:
        """Emit a finished block as a call if it is one, else as the raw text the model wrote."""
        parsed = _parse_call(body)
        if parsed is None:
            _emit(out, OPEN + body + (CLOSE if closed else ""))
            self._state = _TEXT
            return
        call = ToolCall(id=new_call_id(), name=parsed[0], arguments=parsed[1])
        out.append(ToolDelta("tool_call", call=call, index=self._calls))
        self._calls += 1
        self._state = _GAP


class _BodyScanner:
    """Find the marker that ends a block body, skipping markers inside JSON string values.

    It keeps its place between feeds, so a body that arrives in many pieces is scanned once.
    """

    def __init__(self) -> None:
        self._pos = 0
        self._in_string = False
        self._escaped = False
        # A raw control character inside a string is invalid JSON; after one, quotes can no
        # longer be trusted to pair up, so the next marker ends the block wherever it is.
        self._broken = False

    def find(self, body: str) -> tuple[int, str] | None:
        """Return ``(position, marker)`` of the first marker outside a string, or None yet."""
        i = self._pos
        while i < len(body):
            ch = body[i]
            if self._in_string:
                self._string_char(ch)
            elif ch == '"' and not self._broken:
                self._in_string = True
            elif ch == "<":
                rest = body[i : i + len(CLOSE)]
                for marker in (CLOSE, OPEN):
                    if rest.startswith(marker):
                        return i, marker
                if CLOSE.startswith(rest) or OPEN.startswith(rest):
                    break  # a partial marker at the end: wait here for more text
            i += 1
        self._pos = i
        return None

    def _string_char(self, ch: str) -> None:
        if self._escaped:
            self._escaped = False
        elif ch == "\\":
            self._escaped = True
        elif ch == '"':
            self._in_string = False
        elif ch < " ":
            self._in_string = False
            self._broken = True


def _parse_call(body: str) -> tuple[str, str] | None:
    """Return ``(name, arguments JSON)`` if the body is a valid call object, else None."""
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    # Some Hermes-style prompts teach "parameters"; accept it as a synonym.
    args = obj.get("arguments", obj.get("parameters"))
    if args is None:
        return name, "{}"
    if isinstance(args, str):
        return name, args  # already a JSON string, as the API carries it
    if isinstance(args, dict):
        return name, json.dumps(args, ensure_ascii=False)
    return None


def _reject_constant(token: str) -> None:
    """Refuse NaN and Infinity: they are not JSON, and clients could not parse them back."""
    raise ValueError(f"not JSON: {token}")


def _emit(out: list[ToolDelta], text: str) -> None:
    """Append content, merging it into a content delta just before it; skip empty text."""
    if not text:
        return
    if out and out[-1].kind == "content":
        out[-1] = ToolDelta("content", out[-1].text + text)
    else:
        out.append(ToolDelta("content", text))


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Split a whole, finished answer into ``(content, calls)`` with the streaming rules."""
    splitter = ToolCallSplitter()
    deltas = splitter.feed(text) + splitter.finish()
    content = "".join(d.text for d in deltas if d.kind == "content")
    calls = [d.call for d in deltas if d.call is not None]
    return content, calls
