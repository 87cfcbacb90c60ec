"""The chat's Markdown highlighter: colour added as text streams, never a character changed."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.chat.reasoning import Delta
from edge.cli.markdown import BOLD, CODE, FENCE_LINE, RESET, Highlighter
from edge.cli.repl import Printer

SGR = re.compile(r"\x1b\[[0-9;]*m")


def highlight(*pieces: str) -> str:
    h = Highlighter()
    return "".join(h.feed(p) for p in pieces) + h.end()


@pytest.mark.parametrize(
    ("pieces", "shown"),
    [
        (["plain text"], "plain text"),
        (["# Title\nbody"], f"{RESET}{BOLD}# Title{RESET}\nbody"),
        (["#", " Title", ".\n", "x"], f"{RESET}{BOLD}# Title.{RESET}\nx"),
        (["#hashtag"], "#hashtag"),
        (["Some ", "*", "*bold*", "* and"], f"Some {RESET}{BOLD}**bold**{RESET} and"),
        (["a * b"], "a * b"),
        (["use `x`."], f"use {RESET}{CODE}`x`{RESET}."),
        (["`a*`*"], f"{RESET}{CODE}`a*`{RESET}*"),
        (["**b*"], f"{RESET}{BOLD}**b{RESET}*"),  # no bold inside code
        (
            ["**bold `code` bold**"],
            f"{RESET}{BOLD}**bold {RESET}{CODE}`code`{RESET}{BOLD} bold**{RESET}",
        ),
        (["**never closed\nnext"], f"{RESET}{BOLD}**never closed{RESET}\nnext"),
        (
            ["``", "`py\nx = 1\n", "``", "`\nafter"],
            f"{RESET}{FENCE_LINE}```py{RESET}{CODE}\nx = 1\n{RESET}{FENCE_LINE}```{RESET}\nafter",
        ),
        (
            ["```\n# not a heading\n```"],
            f"{RESET}{FENCE_LINE}```{RESET}{CODE}\n# not a heading\n{RESET}{FENCE_LINE}```{RESET}",
        ),
        (["ends with *"], "ends with *"),
        (["#"], "#"),
    ],
)
def test_highlights(pieces: list[str], shown: str) -> None:
    assert highlight(*pieces) == shown


def test_streams_as_it_goes() -> None:
    """Only a possible marker waits: the rest of a piece is out at once."""
    h = Highlighter()
    assert h.feed("Hello wor") == "Hello wor"
    assert h.feed("ld *") == "ld "
    assert h.feed("x") == "*x"
    assert h.feed("\n`") == "\n"  # a line starting with ` may be a fence
    assert h.feed("x") == f"{RESET}{CODE}`x"  # it was a code span
    assert h.end() == RESET


@given(st.lists(st.text(alphabet="ab *`#\n_-é", max_size=12), max_size=12))
def test_the_text_is_the_models_own(pieces: list[str]) -> None:
    shown = highlight(*pieces)
    assert SGR.sub("", shown) == "".join(pieces)
    codes = SGR.findall(shown)
    assert not codes or codes[-1] == RESET  # the terminal is left as it was found


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_printer_colours_the_answer_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Tty()
    printer = Printer(out, out, Highlighter())
    for d in [Delta("reasoning", "think **hard**"), Delta("answer", "**Yes**")]:
        printer.delta(d)
    printer.end()
    assert out.getvalue() == (
        f"\x1b[2mthink **hard**\x1b[0m\x1b[2m\n\x1b[0m{RESET}{BOLD}**Yes**{RESET}"
    )
