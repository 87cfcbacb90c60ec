"""Fuzzing the streaming parsers: any text, cut into any pieces, says what the whole says.

The table and property tests next door (test_reasoning.py, test_tools.py) check the rules;
these throw hostile text at them: marker fragments, quotes, backslashes, braces, control
characters, astral and separator characters, deep JSON, in any order and any cut. For
the think splitter, the tool-call splitter and the two chained as the server chains them
(chat_completions.answer.ChunkWriter, every reasoning format), the stream must never
raise and must give exactly the deltas (kinds and merged text) and calls that feeding the
text whole gives.

Size: ``EDGE_QWEN_FUZZ_EXAMPLES`` examples per property (default 150; the whole file runs
in well under a minute). The long run::

    EDGE_QWEN_FUZZ_EXAMPLES=20000 pytest tests/unit/test_fuzz_parsers.py
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.chat.reasoning import ThinkSplitter
from edge.chat.tools import ToolCallSplitter
from edge.engine import SamplingParams, ThinkingControl
from edge.server.chat_completions.answer import ChunkWriter
from edge.server.chat_completions.request import ChatSpec

EXAMPLES = int(os.environ.get("EDGE_QWEN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MARKERS = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
FRAGMENTS = [
    *MARKERS,
    *(m[:i] for m in MARKERS for i in range(1, len(m))),
    *(m[i:] for m in MARKERS for i in range(1, len(m))),
    "<",
    ">",
    "/",
    "</",
    "<<",
    "think",
    "tool_call",
    "\n",
    "\n\n",
    " ",
    "\t",
    "\r\n",
    '"',
    "\\",
    '\\"',
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    '{"name": "f", "arguments": {}}',
    '{"name": "',
    '", "arguments": ',
    '"parameters"',
    "NaN",
    "Infinity",
    "1e999",
    "null",
    "\x00",
    "\x1f",
    "\u2028",
    "\ufeff",
    "é",
    "中文",
    "😀",
    "\ud7ff",
    "<|im_end|>",
]
noise = st.text(st.characters(codec="utf-8"), max_size=6)
pieces = st.lists(st.one_of(st.sampled_from(FRAGMENTS), noise), max_size=24)
texts = pieces.map("".join)


def deep_json(depth: int) -> str:
    return '{"name": "f", "arguments": ' + '{"a": [' * depth + "1" + "]}" * depth + "}"


@st.composite
def cut_text(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A text and one way to cut it: at random places, one char at a time, or not at all."""
    text = draw(
        st.one_of(
            texts,
            st.builds(deep_json, st.integers(1, 3000)).map(lambda j: f"<tool_call>{j}</tool_call>"),
        )
    )
    how = draw(st.sampled_from(["random", "chars", "whole", "empty pieces"]))
    if how == "chars":
        return text, list(text)
    if how == "whole":
        return text, [text]
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=30)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return text, parts if how == "random" else [p for part in parts for p in ("", part)]


def merged(deltas: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive deltas of one kind joined: what a client shows."""
    out: list[tuple[str, str]] = []
    for kind, text in deltas:
        assert text, f"empty {kind} delta"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def think_run(parts: list[str], in_think: bool, reason: str) -> list[tuple[str, str]]:
    s = ThinkSplitter(in_think=in_think)
    out = [d for p in parts for d in s.feed(p)] + s.finish(reason)
    return merged([(d.kind, d.text) for d in out])


@FUZZ
@given(cut_text(), st.booleans(), st.sampled_from(["stop", "length"]))
def test_think_splitter_cut_anywhere(
    cut: tuple[str, list[str]], in_think: bool, reason: str
) -> None:
    text, parts = cut
    whole = think_run([text], in_think, reason)
    assert think_run(parts, in_think, reason) == whole
    kinds = [k for k, _ in whole]
    assert kinds in ([], ["reasoning"], ["answer"], ["reasoning", "answer"])
    # Nothing is invented: every output character comes from the text, in order.
    assert _subsequence("".join(t for _, t in whole), text)


def _subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


def tool_run(parts: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    s = ToolCallSplitter()
    out = [d for p in parts for d in s.feed(p)] + s.finish()
    content = merged([("content", d.text) for d in out if d.kind == "content"])
    calls = [(d.call.name, d.call.arguments, d.index) for d in out if d.call is not None]
    # The order of content and calls matters too: rebuild the sequence with calls in place.
    order = merged(
        [
            ("content", d.text) if d.kind == "content" else ("call", d.call.name)  # type: ignore[union-attr]
            for d in out
        ]
    )
    assert "".join(t for _, t in content) == "".join(t for k, t in order if k == "content")
    return order, calls


@FUZZ
@given(cut_text())
def test_tool_splitter_cut_anywhere(cut: tuple[str, list[str]]) -> None:
    text, parts = cut
    whole = tool_run([text])
    assert tool_run(parts) == whole
    _, calls = whole
    assert [i for *_, i in calls] == list(range(len(calls)))
    for name, arguments, _ in calls:
        assert name.strip()
        json.loads(arguments)  # arguments are always a JSON string clients can parse


args_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(
            st.sampled_from(['"', "\\", "<", ">", "/", "{", "}", "\n", "a", "é", "😀"]), max_size=12
        ),
        st.sampled_from(MARKERS),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.lists(st.dictionaries(st.text(max_size=5), args_values, max_size=4), min_size=1, max_size=3),
    st.booleans(),
    st.data(),
)
def test_hostile_arguments_survive_any_cut(
    calls: list[dict[str, Any]], ascii_only: bool, data: st.DataObject
) -> None:
    """Valid calls whose arguments are full of markers and escapes come back intact."""
    text = "".join(
        "<tool_call>\n"
        + json.dumps({"name": f"f{i}", "arguments": a}, ensure_ascii=ascii_only)
        + "\n</tool_call>"
        for i, a in enumerate(calls)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=20)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    _, got = tool_run(parts)
    assert [(n, json.loads(a)) for n, a, _ in got] == [(f"f{i}", a) for i, a in enumerate(calls)]


def writer_run(parts: list[str], fmt: str, tools: bool, returned: bool, reason: str) -> Any:
    job = ChatSpec(
        prompt_text="",
        params=SamplingParams(),
        control=ThinkingControl(),
        thinking=True,
        reasoning_format=fmt,
        return_reasoning=returned,
        tools=tools,
        include_usage=False,
    )
    w = ChunkWriter(job, "m")
    deltas = [d for p in parts for d in w.text(p)] + w.finish(reason)
    for d in deltas:
        assert d and all(v for v in d.values()), d  # no empty deltas on the wire
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in w.tool_calls]
    streamed = "".join(d.get("content", "") for d in deltas)
    assert streamed == w.content  # what streams is what the non-streaming answer says
    return w.content, w.reasoning, calls, w.finish_reason(reason)


@FUZZ
@given(
    cut_text(),
    st.sampled_from(["separate", "inline", "hidden"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["stop", "length", "cancelled"]),
)
def test_chunk_writer_cut_anywhere(
    cut: tuple[str, list[str]], fmt: str, tools: bool, returned: bool, reason: str
) -> None:
    """The server's whole chain: reasoning split off, tool calls parsed, deltas framed."""
    text, parts = cut
    assert writer_run(parts, fmt, tools, returned, reason) == writer_run(
        [text], fmt, tools, returned, reason
    )
