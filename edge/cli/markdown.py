"""Markdown highlighting for answers as they stream: colour added, no character changed.

Headings and **bold** turn bold, `code` and fenced code blocks take a colour, the fences
themselves are dimmed. Nothing is redrawn: each piece is written once, as it arrives, so
the answer streams token by token with no flicker, and with the colour codes removed it is
exactly what the model wrote (what /copy and /save give). The only text held back is what
could still turn into a marker: a lone `*` at the end of a piece, or the first characters
of a line that may open a fence or a heading.
"""

from __future__ import annotations

from dataclasses import dataclass

BOLD, CODE, FENCE_LINE, RESET = "\x1b[1m", "\x1b[36m", "\x1b[2m", "\x1b[0m"
FENCE = "```"


@dataclass
class Highlighter:
    """Feed it answer text in pieces; it returns the same text with colour codes added."""

    _held: str = ""
    _line_start: bool = True
    _in_fence: bool = False
    _fence_line: bool = False  # the ``` line itself
    _heading: bool = False
    _bold: bool = False
    _code: bool = False
    _shown: str = ""  # the colour codes in force on the terminal now

    def feed(self, text: str) -> str:
        """The highlighted form of `text`, less what must wait for the next piece."""
        text, self._held = self._held + text, ""
        out: list[str] = []
        i = 0
        while i < len(text):
            if self._line_start:
                wait = _undecided_line_start(text[i:])
                if wait:
                    self._held = text[i:]
                    break
                self._open_line(text[i:])
            i = self._inline(text, i, out)
        return "".join(out)

    def end(self) -> str:
        """The colours switched off, then what was held back, as it is."""
        held, self._held = self._held, ""
        off = RESET if self._shown else ""
        self._shown = ""
        return off + held

    def _open_line(self, line: str) -> None:
        self._line_start = False
        if line.startswith(FENCE):
            self._in_fence = not self._in_fence
            self._fence_line = True
        elif not self._in_fence and _heading_marker(line):
            self._heading = True

    def _inline(self, text: str, i: int, out: list[str]) -> int:
        """Write text[i] (or a two-character marker) with its colour; the next index."""
        ch = text[i]
        if ch == "\n":
            self._heading = self._bold = self._code = self._fence_line = False
            self._line_start = True
            out.append(self._recolour() + ch)
            return i + 1
        if self._in_fence or self._fence_line:
            out.append(self._recolour() + ch)
            return i + 1
        if ch == "`":
            return self._toggle(out, "_code", ch, i)
        if ch == "*" and not self._code:
            if i + 1 == len(text):
                self._held = ch  # the first half of ** or a lone *: the next piece says
                return i + 1
            if text[i + 1] == "*":
                return self._toggle(out, "_bold", "**", i)
        out.append(self._recolour() + ch)
        return i + 1

    def _toggle(self, out: list[str], style: str, marker: str, i: int) -> int:
        # An opening marker takes the new colour, a closing one keeps the old.
        if not getattr(self, style):
            setattr(self, style, True)
            out.append(self._recolour() + marker)
        else:
            out.append(self._recolour() + marker)
            setattr(self, style, False)
        return i + len(marker)

    def _recolour(self) -> str:
        """The codes that bring the terminal to the current state, if it is not there."""
        if self._fence_line:
            want = FENCE_LINE
        elif self._in_fence or self._code:
            want = CODE
        else:
            want = BOLD if self._heading or self._bold else ""
        if want == self._shown:
            return ""
        self._shown = want
        return RESET + want


def _undecided_line_start(rest: str) -> bool:
    """Whether a line's first characters could still open a fence or a heading."""
    line = rest.split("\n", 1)[0]
    if "\n" in rest:
        return False
    if len(line) < len(FENCE) and FENCE.startswith(line):  # "", "`" or "``"
        return True
    return line.strip("#") == "" and len(line) <= 6  # "#".."######" and no space yet


def _heading_marker(line: str) -> bool:
    hashes = len(line) - len(line.lstrip("#"))
    return 1 <= hashes <= 6 and line[hashes : hashes + 1] in (" ", "\n")
