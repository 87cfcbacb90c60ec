"""Prompt rendering, checked byte for byte against transformers' `apply_chat_template`.

Our side renders the template read back from a converted GGUF; the reference side is
transformers with the checkpoint's tokenizer_config.json (Qwen3's real template). The
template's pieces that need no model: tests/unit/test_chat_template.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import transformers

from edge.chat.template import (
    ChatTemplate,
    content_text,
)
from edge.errors import InvalidModelError, UsageError
from tests.support.slow import slow_fixture

Messages = list[dict[str, Any]]


@pytest.fixture(scope="module")
def hf(tiny_dir: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(tiny_dir)


@slow_fixture(scope="module")
def ours(gguf_of: Callable[[str, str], Path]) -> ChatTemplate:
    return ChatTemplate.from_gguf(gguf_of("tiny", "BF16"))


def reference(hf: Any, messages: Messages, **kwargs: Any) -> str:
    """transformers' rendering; `enable_thinking=None` means the argument is not passed."""
    if kwargs.get("enable_thinking", "absent") is None:
        del kwargs["enable_thinking"]
    text = hf.apply_chat_template(copy.deepcopy(messages), tokenize=False, **kwargs)
    assert isinstance(text, str), type(text)
    return text


# --- conversations ------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city; returns °C & a short <summary>.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 北京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    },
}
TOOLS = [WEATHER, SEARCH]


def call(name: str, arguments: Any, call_id: str = "call_0") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

CONVERSATIONS: dict[str, tuple[Messages, list[dict[str, Any]] | None]] = {
    "single_user": ([{"role": "user", "content": "What is 2+2?"}], None),
    "system_user": ([SYSTEM, {"role": "user", "content": "Hello!"}], None),
    "multi_turn_old_thinking_dropped": (
        [
            SYSTEM,
            {"role": "user", "content": "Pick a number."},
            {"role": "assistant", "content": "<think>\nSeven is nice.\n</think>\n\nSeven."},
            {"role": "user", "content": "Another one?"},
            {"role": "assistant", "content": "<think>Maybe 3</think>Three."},
            {"role": "user", "content": "Thanks. /no_think"},
        ],
        None,
    ),
    "last_assistant_keeps_thinking": (
        [
            {"role": "user", "content": "Why is the sky blue?"},
            {"role": "assistant", "content": "<think>\nRayleigh.\n</think>\n\nScattering."},
        ],
        None,
    ),
    "reasoning_content": (
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Add two and two."},
            {"role": "user", "content": "3+3?"},
            {"role": "assistant", "content": "6", "reasoning_content": "\nAdd three.\n"},
        ],
        None,
    ),
    "reasoning_alias": (
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning": "Add them."},
        ],
        None,
    ),
    "tools_one_call_string_arguments": (
        [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("get_weather", '{"city": "Paris"}')],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 18}'},
            {"role": "assistant", "content": "It is 18 °C in Paris."},
            {"role": "user", "content": "And tomorrow?"},
        ],
        TOOLS,
    ),
    "tools_parallel_calls_dict_arguments": (
        [
            {"role": "user", "content": "Weather in 北京 and news about it?"},
            {
                "role": "assistant",
                "content": "Let me check both.",
                "reasoning_content": "Two tools at once.",
                "tool_calls": [
                    call("get_weather", {"city": "北京", "unit": "celsius"}, "call_0"),
                    call("search", {"query": "北京 新闻 <today> & more", "limit": 3}, "call_1"),
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "晴，25 °C ☀️"},
            {"role": "tool", "tool_call_id": "call_1", "content": "No news."},
        ],
        TOOLS,
    ),
    "tools_no_system_call_without_function_wrapper": (
        [
            {"role": "user", "content": "Search cats."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"name": "search", "arguments": {"query": "cats"}}],
            },
            {"role": "tool", "content": "<tool_response>cats</tool_response>"},
        ],
        [SEARCH],
    ),
    "chinese_and_emoji": (
        [
            {"role": "system", "content": "你是一个乐于助人的助手。🤖"},
            {"role": "user", "content": "你好！今天天气怎么样？😀👨‍👩‍👧‍👦"},
            {"role": "assistant", "content": "<think>\n用户问天气。\n</think>\n\n很好！🌞"},
            {"role": "user", "content": "谢谢 🙏"},
        ],
        None,
    ),
    "system_mid_conversation": (
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Bye"},
        ],
        None,
    ),
}


@pytest.mark.parametrize("enable_thinking", [None, True, False], ids=["default", "on", "off"])
@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_equals_transformers(
    ours: ChatTemplate,
    hf: Any,
    name: str,
    add_generation_prompt: bool,
    enable_thinking: bool | None,
) -> None:
    messages, tools = CONVERSATIONS[name]
    kwargs = dict(
        add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking, tools=tools
    )
    before = copy.deepcopy(messages)
    assert ours.render(messages, **kwargs) == reference(hf, messages, **kwargs)
    assert messages == before  # rendering never edits the caller's messages


def test_expected_shapes(ours: ChatTemplate) -> None:
    """Spot checks that the comparison above compares what we think it does."""
    user = [{"role": "user", "content": "Hi"}]
    assert ours.render(user) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    off = ours.render(user, enable_thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert ours.render(user, enable_thinking=True) == ours.render(user)
    assert ours.render(user, add_generation_prompt=False) == "<|im_start|>user\nHi<|im_end|>\n"

    old = ours.render(CONVERSATIONS["multi_turn_old_thinking_dropped"][0])
    assert "<think>" not in old and "Seven is nice" not in old and "Seven." in old

    tools = ours.render(*CONVERSATIONS["tools_parallel_calls_dict_arguments"][:1], tools=TOOLS)
    assert json.dumps(WEATHER, ensure_ascii=False) in tools  # key order kept, no \u escapes
    assert '"arguments": {"city": "北京", "unit": "celsius"}}' in tools
    assert tools.count("<|im_start|>user\n<tool_response>") == 1  # consecutive tool messages merge


def test_text_parts_render_as_joined_string(ours: ChatTemplate, hf: Any) -> None:
    parts = [{"type": "text", "text": "First line."}, {"type": "text", "text": "第二行 😀"}]
    joined = "First line.\n第二行 😀"
    as_parts: Messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": [{"type": "text", "text": "<think>x</think>ok"}]},
        {"role": "user", "content": parts},
    ]
    as_strings = [{**m, "content": content_text(m["content"])} for m in as_parts]
    assert as_strings[1]["content"] == joined
    for thinking in (None, False):
        got = ours.render(as_parts, enable_thinking=thinking)
        assert got == ours.render(as_strings, enable_thinking=thinking)
        assert got == reference(
            hf, as_strings, add_generation_prompt=True, enable_thinking=thinking
        )


def test_null_content_beside_tool_calls_renders_as_empty(ours: ChatTemplate, hf: Any) -> None:
    # OpenAI clients send content: null with tool_calls; transformers fails on it, "" works.
    messages: Messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call("get_weather", "{}")]},
        {"role": "tool", "content": "sunny", "name": None},
    ]
    as_empty = [
        {**messages[0]},
        {**messages[1], "content": ""},
        {"role": "tool", "content": "sunny"},
    ]
    got = ours.render(messages, tools=TOOLS)
    assert got == reference(hf, as_empty, tools=TOOLS, add_generation_prompt=True)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}], "'image_url'"),
        ([{"type": "text", "text": "a"}, {"type": "input_audio"}], "'input_audio'"),
        ([{"type": "text"}], "no 'text' string"),
        ([{"type": "text", "text": 5}], "no 'text' string"),
        (["bare string part"], "'str'"),
        ({"type": "text", "text": "a dict, not a list"}, "not dict"),
        (42, "not int"),
    ],
)
def test_bad_content_is_a_usage_error(ours: ChatTemplate, content: Any, needle: str) -> None:
    with pytest.raises(UsageError, match="content|part") as info:
        ours.render([{"role": "user", "content": content}])
    assert needle in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([], "no messages"),
        ("user: hi", "no messages"),
        (["hi"], "Message 0"),
        ([{"role": "user", "content": "a"}, {"content": "no role"}], "Message 1"),
        ([{"role": "user", "content": "a", "meta": object()}], "JSON data"),
    ],
)
def test_bad_messages_are_usage_errors(ours: ChatTemplate, messages: Any, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        ours.render(messages)
    assert needle in info.value.message


# --- the Jinja environment ------------------------------------------------------------------

ENVIRONMENT_PROBE = """\
{% set ns = namespace(n=0, seen=[]) %}
{% for m in messages %}
    {% if m.role == 'skip' %}{% continue %}{% endif %}
    {% if loop.index > 3 %}{% break %}{% endif %}
    {% set ns.n = ns.n + 1 %}
    [{{ m.role }}|{{ m.content }}]
{% endfor %}
n={{ ns.n }}
{{ data | tojson }}
{{ data | tojson(indent=2) }}
{{ data | tojson(ensure_ascii=True) }}
{{ data | tojson(separators=(',', ':'), sort_keys=true) }}
{{ dict(a=1, b=[1, 2]) | tojson }} {{ dict.fromkeys(['x', 'y'], 0) | tojson }}
{% generation %}gen {{ messages | length }}{% endgeneration %}
{{ strftime_now('%%') }}|{{ extra_flag }}|{{ 'ok' if tools is none else 'tools' }}
"""


def test_environment_matches_transformers(hf: Any) -> None:
    messages: Messages = [
        {"role": "user", "content": "a"},
        {"role": "skip", "content": "s"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "user", "content": "d"},
    ]
    data = {"z": "<b>&'é😀", "a": [1, 2.5, None, True], "m": {"y": 1, "x": 2}}
    ours = ChatTemplate(ENVIRONMENT_PROBE).render(messages, data=data, extra_flag=7)
    theirs = hf.apply_chat_template(
        messages,
        chat_template=ENVIRONMENT_PROBE,
        tokenize=False,
        add_generation_prompt=True,
        data=data,
        extra_flag=7,
    )
    assert ours == theirs
    assert '{"z": "<b>&\'é😀", "a": [1, 2.5, null, true], "m": {"y": 1, "x": 2}}' in ours


def test_from_gguf_reads_the_converted_template(ours: ChatTemplate, tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert ours.source == config["chat_template"]


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_from_gguf_truncated(
    tmp_path: Path, gguf_of: Callable[[str, str], Path], tiny_dir: Path, keep: float
) -> None:
    # Cut the file inside its metadata: in the template, in the merges, in the vocabulary.
    config = json.loads((tiny_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = config["chat_template"].encode()
    data = gguf_of("tiny", "BF16").read_bytes()
    metadata_end = data.index(template) + len(template)
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(metadata_end * keep)])
    with pytest.raises(InvalidModelError, match="not a readable GGUF"):
        ChatTemplate.from_gguf(path)
