"""Chat prompts for Qwen3: the GGUF's own Jinja chat template, rendered as transformers does.

The rendering environment matches transformers' `apply_chat_template` (sandboxed and
immutable, `trim_blocks`/`lstrip_blocks`, loop controls, and its `tojson`, `raise_exception`
and `strftime_now`), so a prompt built here is byte-equal to the reference one. Messages are
prepared the same way too: keys whose value is None are dropped and reasoning sent under
another name is copied to `reasoning_content`. Two inputs transformers cannot render are
accepted: content as a list of OpenAI text parts, and `content: null`, which OpenAI clients
send beside `tool_calls`. Both become plain strings first.

Also here: Qwen3's `/think` and `/no_think` soft switches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from edge.errors import InvalidModelError, UsageError
from edge.model.gguf_meta import read_gguf_string

TEMPLATE_KEY = "tokenizer.chat_template"
"""The GGUF metadata key that holds the Jinja chat template."""

# Clients name a message's reasoning differently (DeepSeek's API `reasoning_content`, vLLM and
# OpenRouter `reasoning`, Ollama `thinking`); the first non-null one wins, as in transformers.
REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")

# A switch is a word of its own: not part of a path ("a/think") or a longer word ("/thinking").
_SWITCH = re.compile(r"(?<![\w/])/(no_)?think(?![\w-])")


class ChatTemplate:
    """A chat template compiled once; `render` turns chat messages into prompt text."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise InvalidModelError(
                f"The chat template does not compile: {exc.message} (line {exc.lineno}).",
                "Re-convert the model from a checkpoint with a valid chat template.",
            ) from None

    @classmethod
    def from_gguf(cls, path: str | Path) -> ChatTemplate:
        """The chat template stored in a GGUF file's `tokenizer.chat_template`."""
        return cls(_read_gguf_template(Path(path)))

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> str:
        """The prompt for `messages`, byte-equal to transformers' `apply_chat_template`.

        `enable_thinking=None` leaves the variable undefined, which Qwen3's template reads as
        thinking on. `tools` are OpenAI function schemas; `extra` become template variables.
        """
        variables: dict[str, Any] = {"documents": None, **_plain(extra)}
        variables.update(
            messages=prepare_messages(messages),
            tools=None if tools is None else _plain(list(tools)),
            add_generation_prompt=add_generation_prompt,
        )
        if enable_thinking is not None:
            variables["enable_thinking"] = enable_thinking
        try:
            return self._template.render(variables)
        except (jinja2.TemplateError, TypeError, ValueError) as exc:
            # TypeError/ValueError come from template expressions applied to the caller's data.
            raise UsageError(
                f"The chat template cannot render these messages: {exc}",
                "Check the roles, order and content of the messages.",
            ) from None


def prepare_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain-data copies of `messages` as the template sees them (the input is not changed)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise UsageError("There are no messages to render.", "Send at least one message.")
    return [_prepare_message(i, message) for i, message in enumerate(messages)]


def _prepare_message(index: int, message: Any) -> dict[str, Any]:
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise UsageError(
            f"Message {index} is not an object with a 'role' string.",
            'Each message looks like {"role": "user", "content": "..."}.',
        )
    # transformers drops null keys, which templates treat as absent rather than as "None".
    plain = {key: _plain(value) for key, value in message.items() if value is not None}
    plain["content"] = content_text(message.get("content"))
    reasoning = next((plain[key] for key in REASONING_KEYS if key in plain), None)
    if reasoning is not None:
        plain.setdefault("thinking", reasoning)
        plain["reasoning_content"] = reasoning
    return plain


def content_text(content: Any) -> str:
    """A message's content as one string: a string, None (empty), or OpenAI text parts.

    Text parts are joined with newlines, as llama.cpp's and vLLM's servers join them, so the
    same request gives the same prompt there. Other part types (images, audio) are refused.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        raise UsageError(
            "Message content must be a string or a list of text parts, "
            f"not {type(content).__name__}.",
            'Send a string, or parts like [{"type": "text", "text": "..."}].',
        )
    return "\n".join(_part_text(part) for part in content)


def _part_text(part: Any) -> str:
    kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
    if kind != "text":
        raise UsageError(
            f"Content parts of type '{kind}' are not supported: Qwen3-0.6B reads text only.",
            'Send only text parts: {"type": "text", "text": "..."}.',
        )
    text = part.get("text")
    if not isinstance(text, str):
        raise UsageError(
            "A text content part has no 'text' string.",
            'Write text parts as {"type": "text", "text": "..."}.',
        )
    return text


def soft_switch(messages: Sequence[Mapping[str, Any]]) -> bool | None:
    """Qwen3's soft switch: True for `/think`, False for `/no_think`, None when absent.

    The last user message that holds a switch decides, and within it the last switch.
    The template ignores these words; the caller turns them into `enable_thinking`.
    """
    for message in reversed(messages):
        if not isinstance(message, Mapping) or message.get("role") != "user":
            continue
        found = _SWITCH.findall(content_text(message.get("content")))
        if found:
            return found[-1] == ""
    return None


# --- the Jinja environment -----------------------------------------------------------------


def _environment() -> ImmutableSandboxedEnvironment:
    # Chat templates are untrusted code from the model file: sandboxed, and unable to mutate
    # the lists and dicts they are given.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        namespace=_SafeNamespace,
        dict=_DictFactory(),
    )
    return env


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # transformers' filter, argument order included. Jinja's own tojson would sort keys and
    # escape <, >, & and ' as \u003c..., and Qwen3's tool list would then differ.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _SafeNamespace(Namespace):
    """`namespace()` that refuses underscore names, which could reach Python internals."""

    # `self` comes out of *args so that a template may still pass `self=` as a name.
    def __init__(*args: Any, **kwargs: Any) -> None:
        self, attrs = args[0], dict(*args[1:], **kwargs)
        for name in attrs:
            _check_name(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _check_name(name)
        Namespace.__setitem__(self, name, value)


def _check_name(name: object) -> None:
    if isinstance(name, str) and name.startswith("_"):
        raise SecurityError(
            f"A chat template may not set the underscore attribute {name!r} on a namespace."
        )


class _DictFactory:
    """`dict(...)` and `dict.fromkeys(...)` for templates, without handing out the dict type."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, keys: Any, value: Any = None) -> dict[Any, Any]:
        return dict.fromkeys(keys, value)


class _GenerationTag(Extension):
    """Parse transformers' `{% generation %}…{% endgeneration %}` and render the body as is.

    transformers uses the tag to mark assistant tokens for training masks; a fine-tune's
    template may carry it, and without this extension it would not compile.
    """

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


# --- helpers -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A copy of `value` made of JSON types only, so the template sees no live Python objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    # Subclasses (str enums, IntEnum) become their base type; their methods stay out.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise UsageError(
        "Chat messages, tools and template variables must be JSON data, "
        f"not {type(value).__name__}.",
        "Convert objects to dicts, lists, strings and numbers first.",
    )


def _read_gguf_template(path: Path) -> str:
    try:
        source = read_gguf_string(path, TEMPLATE_KEY)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidModelError(
            f"{path} is not a readable GGUF file ({exc.__class__.__name__}: {exc}).",
            "Re-download or re-convert it.",
        ) from None
    if source is None or not source.strip():
        raise InvalidModelError(
            f"{path} has no chat template ({TEMPLATE_KEY}).",
            "Re-convert it from a checkpoint whose tokenizer_config.json or "
            "chat_template.jinja has one.",
        )
    return source
