"""The chat template without a model: content parts, the Jinja sandbox's failures, reading
the template from a GGUF of every value type, the soft switches and sampling defaults.
Rendering against transformers, on a converted GGUF: tests/live/test_chat_template.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import pytest

from edge.chat.sampling import sampling_defaults
from edge.chat.template import ChatTemplate, content_text, soft_switch
from edge.config import QWEN3_SAMPLING
from edge.errors import InvalidModelError, UsageError
from edge.model.gguf_meta import read_gguf_string

Messages = list[dict[str, Any]]


def test_content_text() -> None:
    assert content_text(None) == ""
    assert content_text("plain") == "plain"
    assert content_text([]) == ""
    assert content_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert content_text(({"type": "text", "text": "t"},)) == "t"


# --- the Jinja environment ------------------------------------------------------------------


def test_strftime_now() -> None:
    year = ChatTemplate("{{ strftime_now('%Y') }}").render([{"role": "user", "content": ""}])
    assert year.isdigit() and len(year) == 4


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{{ raise_exception('System role not supported') }}", "System role not supported"),
        ("{{ messages[0].nope.deeper }}", "nope"),
        ("{% set x = [] %}{{ x.append(1) }}", "append"),  # the sandbox is immutable
        ("{% set ns = namespace(_secret=1) %}", "_secret"),
        ("{% set ns = namespace() %}{% set ns._x = 1 %}", "_x"),
        ("{{ messages.__class__.__mro__ }}", "__class__"),
        ("{{ 'a' + 1 }}", "str"),
    ],
)
def test_template_failures_are_usage_errors(source: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        ChatTemplate(source).render([{"role": "user", "content": "hi"}])
    assert needle in info.value.message
    assert info.value.message.startswith("The chat template cannot render")


def test_syntax_error_is_invalid_model() -> None:
    with pytest.raises(InvalidModelError, match="does not compile"):
        ChatTemplate("{% for m in messages %}{{ m }}")


# --- reading the template from a GGUF ---------------------------------------------------------


def write_gguf(path: Path, template: str | None, big_endian: bool = False) -> Path:
    """A GGUF with no tensors and metadata of every value type ahead of the template."""
    order = gguf.GGUFEndian.BIG if big_endian else gguf.GGUFEndian.LITTLE
    w = gguf.GGUFWriter(path, "qwen3", endianess=order)
    w.add_uint8("t.u8", 1)
    w.add_int8("t.i8", -1)
    w.add_uint16("t.u16", 2)
    w.add_int16("t.i16", -2)
    w.add_uint32("t.u32", 3)
    w.add_int32("t.i32", -3)
    w.add_float32("t.f32", 1.5)
    w.add_bool("t.bool", True)
    w.add_uint64("t.u64", 4)
    w.add_int64("t.i64", -4)
    w.add_float64("t.f64", 2.5)
    w.add_string("t.str", "héllo")
    w.add_array("t.ints", [1, 2, 3])
    w.add_array("t.strs", ["x", "yy", "中文", ""])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_array("t.nested_strs", [["a"], ["bb", "c"]])
    w.add_array("t.empty", [])
    if template is not None:
        w.add_chat_template(template)
    w.add_string("t.after", "tail")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_from_gguf_skips_every_value_type(tmp_path: Path, big_endian: bool) -> None:
    source = "{% for m in messages %}<{{ m.role }}:{{ m.content }}>{% endfor %}😀"
    path = write_gguf(tmp_path / "all.gguf", source, big_endian)
    template = ChatTemplate.from_gguf(path)
    assert template.source == source
    assert template.render([{"role": "user", "content": "hi"}]) == "<user:hi>😀"
    assert read_gguf_string(path, "t.after") == "tail"
    assert read_gguf_string(path, "t.missing") is None


def test_from_gguf_without_template(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "bare.gguf", None)
    with pytest.raises(InvalidModelError, match="no chat template") as info:
        ChatTemplate.from_gguf(path)
    assert info.value.hint


@pytest.mark.parametrize("content", [b"", b"not a gguf at all", b"GGUF\x01\x00\x00\x00", None])
def test_from_gguf_unreadable(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidModelError, match="not a readable GGUF"):
        ChatTemplate.from_gguf(path)


# --- soft switches and sampling ---------------------------------------------------------------


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], None),
        ([user("hello")], None),
        ([user("How many r's in blueberries? /think")], True),
        ([user("How many r's in blueberries? /no_think")], False),
        ([user("/no_think first, then /think")], True),
        ([user("/think first, then /no_think")], False),
        ([user("/no_think\nWhat is 2+2?")], False),
        ([user("(/think) please")], True),
        ([user("stop thinking. /no_think.")], False),
        ([user("/no_think"), {"role": "assistant", "content": "ok"}, user("next")], False),
        ([user("/no_think"), {"role": "assistant", "content": "ok"}, user("now /think")], True),
        ([user("/think"), user("/no_think")], False),
        ([{"role": "system", "content": "/no_think"}, user("hi")], None),
        ([user("hi"), {"role": "assistant", "content": "/think"}], None),
        ([{"role": "tool", "content": "/no_think"}], None),
        ([user("/thinking about it")], None),
        ([user("see docs/think and http://x.org/no_think")], None),
        ([user("a /think-tank")], None),
        ([user("/THINK")], None),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "text", "text": "/no_think"},
                    ],
                }
            ],
            False,
        ),
        ([{"role": "user", "content": None}], None),
    ],
)
def test_soft_switch(messages: Messages, expected: bool | None) -> None:
    assert soft_switch(messages) is expected


def test_soft_switch_rejects_non_text_parts() -> None:
    with pytest.raises(UsageError, match="image_url"):
        soft_switch([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])


def test_sampling_defaults() -> None:
    assert sampling_defaults(True) == dict(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
    assert sampling_defaults(False) == dict(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0)
    assert sampling_defaults(True) == QWEN3_SAMPLING[True]
    assert isinstance(sampling_defaults(False)["top_k"], int)
    mine = sampling_defaults(True)
    mine["temperature"] = 2.0  # a copy: callers may edit it freely
    assert QWEN3_SAMPLING[True]["temperature"] == 0.6
