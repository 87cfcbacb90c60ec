"""The streaming <tool_call> splitter: a table of answers, then properties over every way
to cut one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.chat.tools import ToolCall, ToolCallSplitter, ToolDelta, parse_tool_calls

OPEN, CLOSE = "<tool_call>", "</tool_call>"

Call = tuple[str, str]  # (name, arguments): what must match, ids being random


def check_pending(splitter: ToolCallSplitter) -> None:
    """Outside a block, only a proper prefix of <tool_call> is held (after a call, whitespace
    too)."""
    if splitter.in_block:
        return
    held = splitter.pending
    core = held.lstrip()
    assert len(core) <= len(OPEN) - 1 and OPEN.startswith(core)
    assert core == held or splitter.called, "only a gap after a call holds whitespace"


def run(pieces: Iterable[str]) -> tuple[str, list[Call], list[ToolDelta]]:
    """Feed pieces one by one, checking invariants after each; return content, calls, deltas."""
    splitter = ToolCallSplitter()
    deltas: list[ToolDelta] = []
    for piece in pieces:
        deltas += splitter.feed(piece)
        check_pending(splitter)
    deltas += splitter.finish()
    calls = [d.call for d in deltas if d.kind == "tool_call"]
    assert all(d.text for d in deltas if d.kind == "content"), "empty content delta"
    assert all(d.call is None for d in deltas if d.kind == "content")
    assert [d.index for d in deltas if d.kind == "tool_call"] == list(range(len(calls)))
    assert splitter.called == bool(calls)
    for call in calls:
        assert call is not None and re.fullmatch(r"call_[0-9a-f]{24}", call.id)
    content = "".join(d.text for d in deltas if d.kind == "content")
    return content, [(c.name, c.arguments) for c in calls if c is not None], deltas


def block(obj: Any) -> str:
    """A block laid out as Qwen3's chat template writes one."""
    return f"{OPEN}\n{json.dumps(obj, ensure_ascii=False)}\n{CLOSE}"


WEATHER = {"name": "get_weather", "arguments": {"city": "Paris"}}
TIME = {"name": "get_time", "arguments": {"tz": "UTC"}}
TRICKY = {"q": 'a } { ] [ </tool_call> <tool_call> " \\ end', "n": {"deep": [1, {"x": {}}]}}
NAN = f'{OPEN}{{"name": "f", "arguments": {{"x": NaN}}}}{CLOSE}'
BAD_JSON = f'{OPEN}\n{{"name": "f", "arguments": {{"a": 1}}\n{CLOSE}'

# (text, content, [(name, arguments)])
TABLE: dict[str, tuple[str, str, list[Call]]] = {
    "no tool call": ("Hello, world!", "Hello, world!", []),
    "empty": ("", "", []),
    "one call": (block(WEATHER), "", [("get_weather", '{"city": "Paris"}')]),
    "two parallel calls": (
        block(WEATHER) + "\n" + block(TIME) + "\n",
        "",
        [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "UTC"}')],
    ),
    "compact, no layout": (
        f'{OPEN}{{"name":"f","arguments":{{"a":1}}}}{CLOSE}{OPEN}{{"name":"g"}}{CLOSE}',
        "",
        [("f", '{"a": 1}'), ("g", "{}")],
    ),
    "text before a call": (
        "Let me check.\n\n" + block(WEATHER),
        "Let me check.\n\n",
        [("get_weather", '{"city": "Paris"}')],
    ),
    "text after a call": (
        block(WEATHER) + "\nDone.",
        "\nDone.",
        [("get_weather", '{"city": "Paris"}')],
    ),
    "arguments as a string": (
        block({"name": "f", "arguments": '{"a": 1}'}),
        "",
        [("f", '{"a": 1}')],
    ),
    "arguments as an object, re-serialized": (
        f'{OPEN}{{"name": "f", "arguments": {{"a":[1,2],"b":null}}}}{CLOSE}',
        "",
        [("f", '{"a": [1, 2], "b": null}')],
    ),
    "parameters as a synonym": (
        block({"name": "f", "parameters": {"a": 1}}),
        "",
        [("f", '{"a": 1}')],
    ),
    "nested JSON, markers inside strings": (
        block({"name": "search", "arguments": TRICKY}),
        "",
        [("search", json.dumps(TRICKY, ensure_ascii=False))],
    ),
    "Chinese and emoji arguments": (
        block({"name": "翻译", "arguments": {"text": "你好，世界 🌍", "to": "emoji 😀"}}),
        "",
        [("翻译", '{"text": "你好，世界 🌍", "to": "emoji 😀"}')],
    ),
    "invalid JSON is content": (BAD_JSON, BAD_JSON, []),
    "missing name is content": (
        block({"arguments": {"a": 1}}),
        block({"arguments": {"a": 1}}),
        [],
    ),
    "non-string name is content": (block({"name": 3}), block({"name": 3}), []),
    "list arguments is content": (
        block({"name": "f", "arguments": [1]}),
        block({"name": "f", "arguments": [1]}),
        [],
    ),
    "NaN is not JSON": (NAN, NAN, []),
    "invalid block between calls": (
        block(WEATHER) + "\n" + BAD_JSON + "\n" + block(TIME),
        BAD_JSON + "\n",
        [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "UTC"}')],
    ),
    "unbalanced quote ends at a raw newline": (
        f'{OPEN}\n{{"name": "f, "arguments": {{}}}}\n{CLOSE}ok',
        f'{OPEN}\n{{"name": "f, "arguments": {{}}}}\n{CLOSE}ok',
        [],
    ),
    "unterminated valid block": (
        f"{OPEN}\n{json.dumps(WEATHER)}\n",
        "",
        [("get_weather", '{"city": "Paris"}')],
    ),
    "unterminated invalid block": (
        f'{OPEN}\n{{"name": "get_wea',
        f'{OPEN}\n{{"name": "get_wea',
        [],
    ),
    "unclosed block, next one opens": (
        f"{OPEN}\n{json.dumps(WEATHER)}\n{block(TIME)}",
        "",
        [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "UTC"}')],
    ),
    "<tool_calls> is text": ("<tool_calls> here", "<tool_calls> here", []),
    "<tool at the end is text": ("see <tool", "see <tool", []),
    "<tool_call without > is text": ("a <tool_call", "a <tool_call", []),
    "after a call, <tool is text": (
        block(TIME) + "\n<tool",
        "\n<tool",
        [("get_time", '{"tz": "UTC"}')],
    ),
    "stray </tool_call> is text": ("a </tool_call> b", "a </tool_call> b", []),
    "a < b": ("a < b <", "a < b <", []),
}


@pytest.mark.parametrize("case", TABLE.values(), ids=TABLE.keys())
def test_table(case: tuple[str, str, list[Call]]) -> None:
    text, content, calls = case
    assert run([text])[:2] == (content, calls)
    assert run(list(text))[:2] == (content, calls)
    got_content, got_calls = parse_tool_calls(text)
    assert (got_content, [(c.name, c.arguments) for c in got_calls]) == (content, calls)


def test_pieces_come_out_as_soon_as_they_can() -> None:
    splitter = ToolCallSplitter()
    steps: list[tuple[str, list[ToolDelta]]] = [
        ("Sure <", [ToolDelta("content", "Sure ")]),  # "<" may start <tool_call>
        ("b", [ToolDelta("content", "<b")]),
        ("\n<tool_", [ToolDelta("content", "\n")]),
        ('call>\n{"na', []),
        ('me": "f"}\n</tool', []),
    ]
    for piece, expected in steps:
        assert splitter.feed(piece) == expected, piece
    [delta] = splitter.feed("_call>")
    assert delta.kind == "tool_call" and delta.index == 0 and delta.call is not None
    assert (delta.call.name, delta.call.arguments) == ("f", "{}")
    assert splitter.called and not splitter.in_block
    assert splitter.feed("\n") == []  # layout after a call waits to see what follows
    assert [d.call.name for d in splitter.feed(block(TIME)) if d.call] == ["get_time"]
    assert splitter.feed("\n\n") == [] and splitter.finish() == []


@pytest.mark.parametrize(
    ("body", "cut", "content", "names"),
    [
        ('\n{"name": "get_ti', True, "", []),  # cut by max_tokens: dropped
        ('\n{"name": "get_time", "arguments": {}}', True, "", ["get_time"]),  # whole: a call
        ('\n{"name": "get_ti', False, '<tool_call>\n{"name": "get_ti', []),  # stopped: shown
    ],
    ids=["cut-dropped", "cut-complete", "stopped-shown"],
)
def test_a_call_cut_short_is_dropped_not_shown(
    body: str, cut: bool, content: str, names: list[str]
) -> None:
    splitter = ToolCallSplitter()
    deltas = splitter.feed("Sure. " + "<tool_call>" + body) + splitter.finish(cut=cut)
    assert "".join(d.text for d in deltas if d.call is None) == "Sure. " + content
    assert [d.call.name for d in deltas if d.call] == names
    assert splitter.dropped == (cut and not names)


def test_ids_are_fresh_and_openai_shaped() -> None:
    _, calls = parse_tool_calls(block(WEATHER) * 3)
    assert len({c.id for c in calls}) == 3
    assert all(isinstance(c, ToolCall) for c in calls)


def test_feed_after_finish_is_a_bug() -> None:
    splitter = ToolCallSplitter()
    splitter.finish()
    with pytest.raises(RuntimeError):
        splitter.feed("x")
    with pytest.raises(RuntimeError):
        splitter.finish()


# Generated answers: segments whose expected output is known by construction.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from([CLOSE, OPEN, "}", '"', "\\", "<"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
arg_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
names = st.text(min_size=1, max_size=8).filter(str.strip)
layouts = st.sampled_from([("\n", "\n"), ("", ""), (" ", "  ")])


@st.composite
def valid_blocks(draw: st.DrawFn) -> tuple[str, Call]:
    name, args, (lead, trail) = draw(names), draw(arg_objects), draw(layouts)
    as_string = draw(st.booleans())
    wire = json.dumps(args, ensure_ascii=False)
    obj = {"name": name, "arguments": wire if as_string else args}
    text = f"{OPEN}{lead}{json.dumps(obj, ensure_ascii=draw(st.booleans()))}{trail}{CLOSE}"
    return text, (name, wire)


# Bodies that are not calls; every quote pairs up or meets a raw newline, so </tool_call> ends them.
INVALID_BODIES = [
    "not json",
    "",
    "\n[1, 2]\n",
    '{"name": 1}',
    '{"arguments": {}}',
    '{"name": ""}',
    '{"name": "f", "arguments": [1]}',
    '{"name": "f"',
    '{"name": "oops\n',
    "a < b </tool",
]
invalid_blocks = st.sampled_from(INVALID_BODIES).map(lambda body: OPEN + body + CLOSE)
# Plain text: no join of pieces spells <tool_call> (no "_" outside parts), but many come close.
TEXT_PARTS = ["<", "<tool", "<tool_calls>", "</tool_call>", "</tool", ">", "\n", " ", "你好", "😀"]
plain = st.one_of(
    st.sampled_from(TEXT_PARTS), st.text(st.characters(blacklist_characters="<_"), max_size=5)
)
Segment = tuple[str, str, Call | None]  # (kind, text, expected call)
segment: st.SearchStrategy[Segment] = st.one_of(
    valid_blocks().map(lambda b: ("call", b[0], b[1])),
    invalid_blocks.map(lambda t: ("raw", t, None)),
    plain.map(lambda t: ("text", t, None)),
)
segments = st.lists(segment, max_size=8)


def expected(segs: list[Segment]) -> tuple[str, str, list[Call]]:
    """The answer text and its content and calls, from segments and the gap rule."""
    text = "".join(s[1] for s in segs)
    content, calls, gap, after_call = "", [], "", False
    for kind, seg, call in segs:
        if kind == "text" and after_call:
            gap += seg
            if gap.strip():  # something said after the call: the layout is content after all
                content, gap, after_call = content + gap, "", False
            continue
        gap = ""  # a block follows the layout after a call: drop the layout
        if call is not None:
            calls.append(call)
        else:
            content += seg
        after_call = call is not None
    return text, content, calls


answers = segments.map(expected)


@settings(max_examples=100, deadline=None)
@given(answers)
def test_every_cut_matches_whole(answer: tuple[str, str, list[Call]]) -> None:
    text, content, calls = answer
    assert run([text])[:2] == (content, calls)
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]])[:2] == (content, calls), cut


@settings(max_examples=200, deadline=None)
@given(answers, st.data())
def test_random_splits_match_whole(
    answer: tuple[str, str, list[Call]], data: st.DataObject
) -> None:
    text, content, calls = answer
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert run(pieces)[:2] == (content, calls)


@settings(max_examples=100, deadline=None)
@given(segments, st.one_of(valid_blocks(), invalid_blocks.map(lambda t: (t, None))))
def test_unterminated_last_block(segs: list[Segment], last: tuple[str, Call | None]) -> None:
    text, content, calls = expected([*segs, ("call" if last[1] else "raw", *last)])
    # The stream stops where </tool_call> would be, as when it is a stop token: a call still
    # counts; a block that is not a call comes back as raw text, without the missing marker.
    text = text[: -len(CLOSE)]
    if last[1] is None:
        content = content[: -len(CLOSE)]
    assert run([text])[:2] == (content, calls)
    assert run(list(text))[:2] == (content, calls)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.data())
def test_any_text_never_raises(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    content, calls, _ = run(pieces)
    if OPEN not in text:
        assert (content, calls) == (text, [])  # without the marker, text passes unchanged
