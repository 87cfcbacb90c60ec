'''What a person types into `edge-qwen chat`, read as one message per send.

On a terminal this is prompt_toolkit: line editing, Ctrl-R search, and history kept across
sessions. A pasted block arrives as one message (bracketed paste), Alt-Enter (or Esc then
Enter) starts a new line, and a message that opens with """ goes on until a line that ends
with """ (Ollama's convention). Anywhere else (a pipe, a file) it is plain `input()`, one
line a message, with the same """ blocks.
'''

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prompt_toolkit.history import History
    from prompt_toolkit.key_binding import KeyBindings

FENCE = '"""'
PROMPT, MORE = ">>> ", "... "
# The history file's bounds: it is trimmed to the newest entries once it outgrows either.
MAX_ENTRIES = 1000
MAX_BYTES = 1 << 20
MAX_ENTRY_BYTES = 64 << 10  # a bigger message (a pasted file) is sent but not kept


def open_block(text: str) -> bool:
    '''Whether `text` is a """ block still waiting for the line that closes it.'''
    text = text.strip()
    return text.startswith(FENCE) and not text[len(FENCE) :].endswith(FENCE)


def unfence(text: str) -> str:
    '''The message a closed """ block holds; any other text as it is.'''
    stripped = text.strip()
    if not stripped.startswith(FENCE) or open_block(stripped):
        return text
    return stripped[len(FENCE) : -len(FENCE)].strip("\n")


class Reader(Protocol):
    """Gives the next message: raises EOFError on Ctrl-D, KeyboardInterrupt on Ctrl-C."""

    history: HistoryFile | None

    def read(self) -> str: ...


class PlainReader:
    """`input()` a line at a time, for a pipe or a file (and readline where there is one)."""

    history: HistoryFile | None = None

    def __init__(self) -> None:
        try:
            import readline  # noqa: F401  (importing it turns line editing on for input())
        except ImportError:
            pass

    def read(self) -> str:
        text = input(PROMPT)
        while open_block(text):
            try:
                text += "\n" + input(MORE)
            except EOFError:  # the input ended inside a block: send what it holds
                return text.strip()[len(FENCE) :].strip("\n")
        return unfence(text)


class TerminalReader:
    """prompt_toolkit's prompt with our Enter, Alt-Enter, Ctrl-C and history file."""

    def __init__(self, history: HistoryFile | None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        self.history = history
        self._session: PromptSession[str] = PromptSession(
            PROMPT,
            multiline=True,
            prompt_continuation=MORE,
            key_bindings=_bindings(),
            history=history.backend() if history else InMemoryHistory(),
        )

    def read(self) -> str:
        return unfence(self._session.prompt())


def _bindings() -> KeyBindings:
    from prompt_toolkit.enums import DEFAULT_BUFFER
    from prompt_toolkit.filters import has_focus
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    keys = KeyBindings()
    editing = has_focus(DEFAULT_BUFFER)  # not while Ctrl-R's search line has the keys

    @keys.add("enter", filter=editing)
    def _send(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if open_block(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @keys.add("escape", "enter", filter=editing)
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @keys.add("c-c", filter=editing)
    def _interrupt(event: KeyPressEvent) -> None:
        # Ctrl-C drops what was typed; at an empty prompt it leaves, as it always has.
        if event.current_buffer.text:
            event.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt())

    return keys


def open_reader(history: HistoryFile | None) -> Reader:
    """prompt_toolkit when both ends are a terminal that can draw, plain `input()` otherwise.

    A dumb terminal (TERM=dumb, Emacs' shell) edits lines itself and sends them whole, so
    `input()` suits it; prompt_toolkit's fallback for it also misses a Ctrl-D typed before
    its first prompt is up.
    """
    from prompt_toolkit.utils import is_dumb_terminal

    if sys.stdin.isatty() and sys.stdout.isatty() and not is_dumb_terminal():
        return TerminalReader(history)
    return PlainReader()


class HistoryFile:
    """Messages sent, one JSON string a line in a file only its owner can read.

    `recording` is what /history on|off switches: off, nothing more is written, and what
    the file holds stays. Lines that do not parse are skipped, never deleted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recording = True
        self._last: str | None = None  # the same message sent again is kept once

    def entries(self) -> list[str]:
        """What the file holds, oldest first, at most MAX_ENTRIES."""
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:  # none yet, or unreadable: a session without the past
            return []
        return [e for e in map(_parse, lines) if e is not None][-MAX_ENTRIES:]

    def add(self, text: str) -> None:
        """Append one message (if recording and not huge); trim when the file outgrows
        its bounds."""
        line = json.dumps(text, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")
        if not self.recording or len(data) > MAX_ENTRY_BYTES or text == self._last:
            return
        self._last = text
        try:
            if self._append(data) > MAX_BYTES:
                self._trim()
        except OSError as exc:  # a full disk or a read-only home must not end the chat
            self.recording = False
            print(f"history off: {self.path} could not be written ({exc})", file=sys.stderr)

    def _append(self, data: bytes) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also a file made before, or by another umask
            os.write(fd, data)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def clear(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)

    def _trim(self) -> None:
        keep: list[str] = []
        total = 0
        for entry in reversed(self.entries()):  # newest first, up to half the byte bound
            total += len(json.dumps(entry, ensure_ascii=False).encode("utf-8")) + 1
            if total > MAX_BYTES // 2:
                break
            keep.append(entry)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in reversed(keep))
        os.replace(tmp, self.path)

    def backend(self) -> History:
        """This file as prompt_toolkit's history: loaded once, each send appended."""
        from prompt_toolkit.history import History

        owner = self

        class _Backend(History):
            def load_history_strings(self) -> Iterable[str]:
                return list(reversed(owner.entries()))  # prompt_toolkit wants newest first

            def store_string(self, string: str) -> None:
                owner.add(string)

        return _Backend()


def _parse(line: str) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, str) else None
