"""The interactive `edge-qwen chat` session: read a message or a /command, stream a reply.

Reading is `lineinput`'s (prompt_toolkit on a terminal, `input()` elsewhere); printing is
`repl.Printer`'s. Commands and notes go to stderr, answers to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from edge.chat.conversation import Conversation, TurnOptions
from edge.cli.lineinput import Reader, fenced
from edge.cli.markdown import Highlighter
from edge.cli.repl import DIM, RESET, Printer, colour_on, stats_line
from edge.engine import Finish
from edge.errors import EdgeError, UsageError

HELP = """Commands:
  /think, /no_think   turn thinking on or off (also as Qwen soft switches inside a message;
                      Ollama's /set think and /set nothink work too)
  /system TEXT        set the system prompt (and start over)
  /set NAME VALUE     temperature, top_p, top_k, min_p, max_tokens, thinking_budget, seed,
                      loop_guard; VALUE default gives one back (/set temperature 0.2)
  /show               the model, the context used and every setting
  /stats              statistics of the last answer
  /reset              forget the conversation
  /save FILE          save the conversation as JSON;  /load FILE  load one
  /copy               copy the last answer to the clipboard
  /history on|off|clear   keep what you type for the next session (or not; or forget it)
  /help               this text;  /exit (or Ctrl-D)  leave
Enter sends; Alt-Enter (or Esc, Enter) starts a new line; a pasted block is one message;
\"\"\" starts a message that the next line ending in \"\"\" ends. Ctrl-R searches what you
sent before. Ctrl-C stops an answer (and clears a half-typed message)."""


def note(message: str) -> None:
    """A line about the session, not part of any answer: stderr."""
    print(message, file=sys.stderr)


class ChatLoop:
    """One person's session: the conversation, the knobs of its next turns, the reader."""

    def __init__(
        self,
        conv: Conversation,
        opts: TurnOptions,
        reader: Reader,
        *,
        show_thinking: bool,
        markdown: bool = False,
    ) -> None:
        self.conv, self.opts, self.reader = conv, opts, reader
        self.show_thinking, self.markdown = show_thinking, markdown
        self.last: Finish | None = None
        self.commands: dict[str, Callable[[str], str | None]] = {
            "/think": lambda _: self._think(True),
            "/no_think": lambda _: self._think(False),
            "/system": self._system,
            "/reset": self._reset,
            "/clear": self._reset,
            "/save": lambda arg: self._file("save", arg),
            "/load": lambda arg: self._file("load", arg),
            "/set": self._set,
            "/show": self._show,
            "/stats": self._stats,
            "/copy": self._copy,
            "/history": self._history,
            "/help": lambda _: note(HELP),
            "/exit": lambda _: "exit",
            "/quit": lambda _: "exit",
            "/bye": lambda _: "exit",
        }

    def run(self) -> None:
        """Loop until /exit, Ctrl-D, or Ctrl-C at an empty prompt."""
        mode = "on" if self.conv.thinking else "off"
        note(f"Chatting with {self.conv.model_name} (thinking {mode}). /help for commands.")
        while True:
            try:
                text = self.reader.read()
            except (EOFError, KeyboardInterrupt):
                note("")
                return
            if self.handle(text) == "exit":
                return

    def handle(self, text: str) -> str | None:
        """One message or command; an error is printed and the session goes on."""
        inside = fenced(text)  # a """ block is always a message, even one starting with /
        message = trimmed(text) if inside is None else inside
        if not message.strip():
            return None
        try:
            if inside is None and is_command(message):
                return self.command(message)
            self.reply(message)
        except EdgeError as exc:
            note(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""))
        return None

    def reply(self, text: str) -> None:
        """Stream one answer; Ctrl-C stops it and keeps the part already said."""
        printer = Printer(
            sys.stdout,
            sys.stdout if self.show_thinking else None,
            Highlighter() if self.markdown else None,
        )
        try:
            for event in self.conv.send(text, self.opts):
                if isinstance(event, Finish):
                    self.last = event
                else:
                    printer.delta(event)
        except KeyboardInterrupt:
            note("\n[stopped]")
            return
        finally:  # also on an error: colours off, held-back text out
            printer.end()
        print()
        if self.last is not None:
            line = stats_line(self.last)
            note(f"{DIM}{line}{RESET}" if colour_on(sys.stderr) else line)

    def command(self, line: str) -> str | None:
        """Run a slash command; returns 'exit' to leave."""
        name, _, arg = line.partition(" ")
        if name not in self.commands:
            raise UsageError(f"Unknown command {name}. /help lists the commands.")
        return self.commands[name](arg.strip())

    def _think(self, on: bool) -> None:
        self.conv.thinking = on
        note(f"thinking {'on' if self.conv.thinking else 'off'}")

    def _system(self, arg: str) -> None:
        self.conv.system = arg or None
        self.conv.reset()
        note("system prompt set; conversation cleared" if arg else "system prompt removed")

    def _reset(self, _: str) -> None:
        self.conv.reset()
        note("conversation cleared")

    def _file(self, verb: str, arg: str) -> None:
        if not arg:
            raise UsageError(f"/{verb} needs a file name, e.g. /{verb} chat.json")
        getattr(self.conv, verb)(Path(arg).expanduser())
        done = "saved to" if verb == "save" else "loaded"
        note(f"{done} {arg} ({len(self.conv.messages)} messages)")

    def _set(self, arg: str) -> None:
        from edge.cli.knobs import set_knob, thinking_asked

        thinking = thinking_asked(arg)
        if thinking is not None:  # Ollama's /set think, /set nothink
            self._think(thinking)
            return
        self.opts, said = set_knob(self.opts, arg)
        note(said)

    def _show(self, _: str) -> None:
        from edge.cli.knobs import show_knobs

        used = len(self.conv.prompt_tokens(self.conv.thinking)) if self.conv.messages else 0
        n_ctx = self.conv.engine.limits.n_ctx
        history = self.reader.history
        kept = "off" if history is None or not history.recording else f"on ({history.path})"
        note(
            "\n".join(
                [
                    f"model      {self.conv.model_name}",
                    f"context    {used} of {n_ctx} tokens used",
                    f"thinking   {'on' if self.conv.thinking else 'off'}",
                    f"system     {self.conv.system or '(none)'}",
                    f"history    {kept}",
                    "settings (/set NAME VALUE):",
                    *show_knobs(self.opts, self.conv.thinking),
                ]
            )
        )

    def _stats(self, _: str) -> None:
        note(stats_line(self.last) if self.last else "no answer yet")

    def _copy(self, _: str) -> None:
        from edge.cli.clipboard import copy

        answers = [m for m in self.conv.messages if m["role"] == "assistant" and m["content"]]
        if not answers:
            raise UsageError("There is no answer to copy yet.")
        tool = copy(answers[-1]["content"])
        note(f"copied the last answer ({len(answers[-1]['content'])} characters, {tool})")

    def _history(self, arg: str) -> None:
        history = self.reader.history
        if history is None:
            raise UsageError(
                "No history is kept in this session.",
                "It is kept on a terminal unless EDGE_QWEN_HISTORY=off or --no-history.",
            )
        if arg in ("on", "off"):
            history.recording = arg == "on"
            note(
                f"history {arg}: {'kept in' if arg == 'on' else 'no longer written to'} "
                f"{history.path}"
            )
        elif arg == "clear":
            history.clear()
            self.reader.forget()  # Up and Ctrl-R no longer reach it either
            note(f"history cleared ({history.path} removed)")
        else:
            raise UsageError("Usage: /history on, /history off or /history clear.")


def is_command(text: str) -> bool:
    """A one-line text starting with / (but not Qwen's /think or /no_think soft switch
    that starts a message)."""
    return (
        text.startswith("/") and "\n" not in text and not text.startswith(("/think ", "/no_think "))
    )


def trimmed(text: str) -> str:
    """A line trimmed; a block only of its blank lines around, keeping its first line's
    indent (pasted code)."""
    return text.strip() if "\n" not in text.strip() else text.strip("\n").rstrip()
