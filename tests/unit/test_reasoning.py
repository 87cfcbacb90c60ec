"""The streaming <think> splitter: a table of outputs, then properties over every way to cut one."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.chat.reasoning import Delta, ThinkSplitter, split_text

OPEN, CLOSE = "<think>", "</think>"


def reference(text: str, *, in_think: bool = False, reason: str = "stop") -> tuple[str, str]:
    """The rules written over a whole text, independently of the splitter's state machine."""
    if not in_think:
        body = text.lstrip()
        if not body.startswith(OPEN):
            return "", text
        text = body[len(OPEN) :]
    reasoning, closed, answer = text.partition(CLOSE)
    reasoning = reasoning.lstrip("\n")
    if closed:
        return reasoning.rstrip("\n"), answer.lstrip("\n")
    return (reasoning if reason == "length" else reasoning.rstrip("\n")), ""


def check_pending(splitter: ThinkSplitter, answered: bool) -> None:
    """Held back: at most a proper prefix of the next marker after a whitespace run."""
    held = splitter.pending
    if answered or (splitter.saw_think and not splitter.in_think):
        assert held == ""  # past </think> or into the answer nothing is ever held
        return
    core = held.lstrip("\n") if splitter.in_think else held.lstrip()
    marker = CLOSE if splitter.in_think else OPEN
    assert len(core) < len(marker) and marker.startswith(core)
    blank = held[: len(held) - len(core)]
    assert blank == "\n" * len(blank) if splitter.in_think else blank.strip() == ""
    assert len(held) <= len(CLOSE) + len(blank)


def run(
    pieces: Iterable[str], *, in_think: bool = False, reason: str = "stop"
) -> tuple[str, str, list[Delta]]:
    """Feed pieces one by one, checking invariants after each; return reasoning, answer, deltas."""
    splitter = ThinkSplitter(in_think=in_think)
    deltas: list[Delta] = []
    for piece in pieces:
        deltas += splitter.feed(piece)
        check_pending(splitter, any(d.kind == "answer" for d in deltas))
    deltas += splitter.finish(reason)
    assert all(d.text for d in deltas), "empty delta"
    kinds = [d.kind for d in deltas]
    assert "reasoning" not in kinds[kinds.index("answer") :] if "answer" in kinds else True
    reasoning = "".join(d.text for d in deltas if d.kind == "reasoning")
    answer = "".join(d.text for d in deltas if d.kind == "answer")
    return reasoning, answer, deltas


# (text, in_think, reason, reasoning, answer)
TABLE = {
    "thinking on": (
        "<think>\nLet me think\n</think>\n\nHello world",
        False,
        "stop",
        "Let me think",
        "Hello world",
    ),
    "thinking off": ("Hello world", False, "stop", "", "Hello world"),
    "empty think block": ("<think>\n\n</think>\n\nHi", False, "stop", "", "Hi"),
    "length mid-reasoning": (
        "<think>\nStep one.\nStep two\n",
        False,
        "length",
        "Step one.\nStep two\n",
        "",
    ),
    "stop mid-reasoning": (
        "<think>\nStep one.\nStep two\n",
        False,
        "stop",
        "Step one.\nStep two",
        "",
    ),
    "length inside </th": ("<think>\nabc\n</th", False, "length", "abc\n</th", ""),
    "stop inside </th": ("<think>\nabc\n</th", False, "stop", "abc\n</th", ""),
    "length inside <thi": ("\n<thi", False, "length", "", "\n<thi"),
    "whitespace before <think>": (" \n\t<think>x</think>y", False, "stop", "x", "y"),
    "only whitespace": (" \n ", False, "stop", "", " \n "),
    "<think> after answer text": (
        "Sure: <think>no</think> ok",
        False,
        "stop",
        "",
        "Sure: <think>no</think> ok",
    ),
    "second think block is answer": (
        "<think>a</think>b<think>c</think>",
        False,
        "stop",
        "a",
        "b<think>c</think>",
    ),
    "second </think> is answer": ("<think>a</think>b</think>c", False, "stop", "a", "b</think>c"),
    "</think> never opened is answer": ("Hi</think>there", False, "stop", "", "Hi</think>there"),
    "in_think with only </think>": (
        "Reasoning here\n</think>\n\nAnswer",
        True,
        "stop",
        "Reasoning here",
        "Answer",
    ),
    "in_think bare </think>": ("</think>", True, "stop", "", ""),
    "in_think <think> is reasoning text": ("<think>x</think>y", True, "stop", "<think>x", "y"),
    "in_think never closed": ("\nstill going\n", True, "length", "still going\n", ""),
    "unicode": (
        "<think>\n让我想想 🤔 naïve\n</think>\n\n你好，世界 🌍",
        False,
        "stop",
        "让我想想 🤔 naïve",
        "你好，世界 🌍",
    ),
    "a < b": ("a < b", False, "stop", "", "a < b"),
    "<thinking> is not a tag": ("<thinking>hi", False, "stop", "", "<thinking>hi"),
    "< inside both parts": (
        "<think>x < y, <thinking></think>a < b",
        False,
        "stop",
        "x < y, <thinking>",
        "a < b",
    ),
    "</think at end of reasoning": ("<think>\nhmm </think", False, "stop", "hmm </think", ""),
    "</think at end of answer": ("<think>a</think>b </think", False, "stop", "a", "b </think"),
    "inner newlines kept": (
        "<think>\n\na\n\nb\n\n</think>\n\n  c\n\n",
        False,
        "stop",
        "a\n\nb",
        "  c\n\n",
    ),
}


@pytest.mark.parametrize("case", TABLE.values(), ids=TABLE.keys())
def test_table(case: tuple[str, bool, str, str, str]) -> None:
    text, in_think, reason, reasoning, answer = case
    assert reference(text, in_think=in_think, reason=reason) == (reasoning, answer)
    assert run([text], in_think=in_think, reason=reason)[:2] == (reasoning, answer)
    assert run(list(text), in_think=in_think, reason=reason)[:2] == (reasoning, answer)
    if reason == "stop":
        assert split_text(text, in_think=in_think) == (reasoning, answer)


def test_tokens_come_out_as_soon_as_they_can() -> None:
    splitter = ThinkSplitter()
    steps = [
        ("<thi", []),
        ("nk>", []),
        ("\n", []),
        ("Let", [Delta("reasoning", "Let")]),
        (" me\n", [Delta("reasoning", " me")]),  # the newline may end the reasoning
        ("\n", []),
        ("x <", [Delta("reasoning", "\n\nx ")]),  # "<" may start </think>
        (" y\n</th", [Delta("reasoning", "< y")]),
        ("ink>", []),
        ("\n\n", []),
        ("Hello <", [Delta("answer", "Hello <")]),  # nothing is held in the answer
    ]
    for piece, expected in steps:
        assert splitter.feed(piece) == expected, piece
    assert splitter.finish("stop") == []


def test_state_flags() -> None:
    splitter = ThinkSplitter()
    assert not splitter.in_think and not splitter.saw_think
    splitter.feed("<think>")
    assert splitter.in_think and splitter.saw_think
    splitter.feed("a</think>b")
    assert not splitter.in_think and splitter.saw_think
    cut = ThinkSplitter(in_think=True)
    assert cut.in_think and cut.saw_think
    assert cut.finish("length") == [] and cut.in_think  # ended inside the block
    assert not ThinkSplitter().saw_think


def test_feed_after_finish_is_a_bug() -> None:
    splitter = ThinkSplitter()
    splitter.finish("stop")
    with pytest.raises(RuntimeError):
        splitter.feed("x")
    with pytest.raises(RuntimeError):
        splitter.finish("stop")


def test_one_feed_merges_same_kind() -> None:
    assert ThinkSplitter().feed("<think>a</think>b") == [
        Delta("reasoning", "a"),
        Delta("answer", "b"),
    ]


# Text that exercises the markers: whole and partial tags, newlines, spaces, and anything else.
PARTS = [OPEN, CLOSE, "<", "</", "<th", "</th", "<think", "</think", "nk>", ">", "\n", "\n\n"]
PARTS += [" ", "\t", "a", "你好", "😀"]
texts = st.lists(
    st.one_of(st.sampled_from(PARTS), st.text(max_size=4)),
    max_size=14,
).map("".join)
modes = st.booleans()
reasons = st.sampled_from(["stop", "length"])


@settings(max_examples=150, deadline=None)
@given(texts, modes, reasons)
def test_every_cut_matches_whole(text: str, in_think: bool, reason: str) -> None:
    whole = run([text], in_think=in_think, reason=reason)[:2]
    assert whole == reference(text, in_think=in_think, reason=reason)
    for cut in range(len(text) + 1):
        pieces = [text[:cut], text[cut:]]
        assert run(pieces, in_think=in_think, reason=reason)[:2] == whole, cut


@settings(max_examples=300, deadline=None)
@given(texts, modes, reasons, st.data())
def test_random_splits_match_whole(
    text: str, in_think: bool, reason: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert "".join(pieces) == text
    got = run(pieces, in_think=in_think, reason=reason)[:2]
    assert got == reference(text, in_think=in_think, reason=reason)


@settings(max_examples=200, deadline=None)
@given(st.text(), modes, reasons)
def test_any_text_one_char_at_a_time(text: str, in_think: bool, reason: str) -> None:
    assert run(list(text), in_think=in_think, reason=reason)[:2] == reference(
        text, in_think=in_think, reason=reason
    )
