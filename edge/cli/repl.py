"""Terminal front ends: the streaming `run` printer and the interactive `chat` loop.

Answer text goes to stdout as it is generated; reasoning is dimmed (on a terminal) and,
for `run`, sent to stderr so `edge-qwen run … > answer.txt` captures only the answer.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edge.chat.conversation import Conversation, TurnOptions
from edge.chat.reasoning import Delta
from edge.engine import Finish
from edge.errors import EdgeError

DIM, RESET = "\x1b[2m", "\x1b[0m"
HELP = """Commands:
  /think, /no_think   turn thinking on or off (also as Qwen soft switches inside a message)
  /system TEXT        set the system prompt (and start over)
  /reset              forget the conversation
  /save FILE          save the conversation as JSON;  /load FILE  load one
  /stats              statistics of the last answer
  /help               this text;  /exit (or Ctrl-D)  leave
Ctrl-C stops the current answer and keeps what was said."""


@dataclass
class Printer:
    """Writes deltas where they belong, dimming reasoning on a terminal."""

    out: TextIO
    think_out: TextIO | None  # None hides reasoning
    _kind: str = ""

    def delta(self, d: Delta) -> None:
        stream = self.out if d.kind == "answer" else self.think_out
        if stream is None:
            return
        if d.kind != self._kind and self._kind == "reasoning" and self.think_out is not None:
            self._write(self.think_out, "\n", dim=True)  # end the thinking paragraph
        self._kind = d.kind
        self._write(stream, d.text, dim=d.kind == "reasoning")

    def end(self) -> None:
        if self._kind == "reasoning" and self.think_out is not None:
            self._write(self.think_out, "\n", dim=True)
        self._kind = ""

    @staticmethod
    def _write(stream: TextIO, text: str, *, dim: bool) -> None:
        if dim and stream.isatty() and not os.environ.get("NO_COLOR"):
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


class ChatLoop:
    """The interactive session: read a line, run a command or stream a reply."""

    def __init__(self, conv: Conversation, opts: TurnOptions, *, show_thinking: bool) -> None:
        self.conv, self.opts, self.show_thinking = conv, opts, show_thinking
        self.last: Finish | None = None
        _enable_line_editing()

    def run(self) -> None:
        """Loop until /exit, Ctrl-D, or Ctrl-C at an empty prompt."""
        mode = "on" if self.conv.thinking else "off"
        print(
            f"Chatting with {self.conv.model_name} (thinking {mode}). /help for commands.",
            file=sys.stderr,
        )
        while True:
            try:
                line = input(">>> ")
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/") and not line.startswith(("/think ", "/no_think ")):
                    if self.command(line) == "exit":
                        return
                else:
                    self.reply(line)
            except EdgeError as exc:
                print(
                    f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""),
                    file=sys.stderr,
                )

    def reply(self, text: str) -> None:
        """Stream one answer; Ctrl-C stops it and keeps the part already said."""
        printer = Printer(sys.stdout, sys.stdout if self.show_thinking else None)
        try:
            for event in self.conv.send(text, self.opts):
                if isinstance(event, Finish):
                    self.last = event
                else:
                    printer.delta(event)
        except KeyboardInterrupt:
            printer.end()
            print("\n[stopped]", file=sys.stderr)
            return
        printer.end()
        print()
        if self.last is not None:
            print(
                f"{DIM}{stats_line(self.last)}{RESET}"
                if sys.stderr.isatty()
                else stats_line(self.last),
                file=sys.stderr,
            )

    def command(self, line: str) -> str | None:
        """Run a slash command; returns 'exit' to leave."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/exit", "/quit", "/bye"):
            return "exit"
        if name in ("/think", "/no_think"):
            self.conv.thinking = name == "/think"
            print(f"thinking {'on' if self.conv.thinking else 'off'}", file=sys.stderr)
        elif name == "/system":
            self.conv.system = arg or None
            self.conv.reset()
            print(
                "system prompt set; conversation cleared" if arg else "system prompt removed",
                file=sys.stderr,
            )
        elif name == "/reset":
            self.conv.reset()
            print("conversation cleared", file=sys.stderr)
        elif name in ("/save", "/load"):
            if not arg:
                raise _usage(f"{name} needs a file name, e.g. {name} chat.json")
            getattr(self.conv, name[1:])(Path(arg).expanduser())
            print(
                f"{'saved to' if name == '/save' else 'loaded'} {arg} "
                f"({len(self.conv.messages)} messages)",
                file=sys.stderr,
            )
        elif name == "/stats":
            print(stats_line(self.last) if self.last else "no answer yet", file=sys.stderr)
        elif name == "/help":
            print(HELP, file=sys.stderr)
        else:
            raise _usage(f"Unknown command {name}. /help lists the commands.")
        return None


def _usage(message: str) -> EdgeError:
    from edge.errors import UsageError

    return UsageError(message)


def _enable_line_editing() -> None:
    """Arrow keys and history through readline, where the platform has it."""
    try:
        import readline  # noqa: F401  (importing it is what turns line editing on for input())
    except ImportError:
        pass
