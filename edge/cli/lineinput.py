'''What a person types into `edge-qwen chat`, read as one message per send.

On a terminal this is prompt_toolkit: line editing, Ctrl-R search, and history kept across
sessions. A pasted block arrives as one message (bracketed paste), Alt-Enter (or Esc then
Enter) starts a new line, and a message that opens with """ goes on until a line that ends
with """ (Ollama's convention). Anywhere else (a pipe, a file) it is plain `input()`, one
line a message, with the same """ blocks.
'''

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol

from edge.cli.history import HistoryFile

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings

FENCE = '"""'
PROMPT, MORE = ">>> ", "... "


def open_block(text: str) -> bool:
    '''Whether `text` is a """ block still waiting for the line that closes it.

    A block opens with """ on the first line, with no """ after it there (that is
    `"""one line"""`, or a pasted module docstring, not a block), and closes at a later
    line that ends with """.
    '''
    first, *rest = text.strip().split("\n")
    if not first.startswith(FENCE) or FENCE in first[len(FENCE) :]:
        return False
    return not any(line.rstrip().endswith(FENCE) for line in rest)


def fenced(text: str) -> str | None:
    '''The message inside a closed """ block; None when `text` is not one.'''
    stripped = text.strip()
    if "\n" not in stripped:  # """one line""", but not """a""" b """c"""
        inner = stripped[len(FENCE) : -len(FENCE)]
        closed = stripped.startswith(FENCE) and stripped.endswith(FENCE) and FENCE not in inner
        return inner if closed and len(stripped) >= 2 * len(FENCE) else None
    # Closed by its last line: all before it is a block still open.
    head, last = stripped.rsplit("\n", 1)
    if not (open_block(head) and last.rstrip().endswith(FENCE)):
        return None
    return stripped[len(FENCE) : -len(FENCE)].strip("\n")


class Reader(Protocol):
    '''Gives the next message as typed (a """ block with its fences): raises EOFError on
    Ctrl-D, KeyboardInterrupt on Ctrl-C.'''

    history: HistoryFile | None

    def read(self) -> str: ...

    def forget(self) -> None:
        """Drop the history loaded for Up and Ctrl-R."""


class PlainReader:
    """`input()` a line at a time, for a pipe or a file (and readline where there is one)."""

    history: HistoryFile | None = None

    def forget(self) -> None:
        pass  # a pipe has no recall

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
            except EOFError:  # the input ended inside a block: close it, send what it holds
                return text + "\n" + FENCE
        return text


class TerminalReader:
    """prompt_toolkit's prompt with our Enter, Alt-Enter, Ctrl-C and history file."""

    def __init__(self, history: HistoryFile | None) -> None:
        self.history = history
        self._session = self._new_session()

    def read(self) -> str:
        text = self._session.prompt()
        if self.history is not None and self.history.failure:
            # Said once the prompt is done: during it, the line would land inside the redraw.
            print(self.history.failure, file=sys.stderr)
            self.history.failure = ""
        return text

    def forget(self) -> None:
        """Start over without the history loaded so far (after /history clear)."""
        self._session = self._new_session()

    def _new_session(self) -> PromptSession[str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        return PromptSession(
            PROMPT,
            multiline=True,
            prompt_continuation=MORE,
            key_bindings=_bindings(),
            history=self.history.backend() if self.history else InMemoryHistory(),
        )


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
