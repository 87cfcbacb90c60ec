"""Constrained answers: the one path from a JSON schema to the GBNF grammar the engine
samples under, for `response_format` / `text.format` and for forced tool calls alike.

A forced call (`tool_choice` "required" or a named function, Anthropic's "any"/"tool") is
one grammar: Qwen3's own `<tool_call>\\n{"name": …, "arguments": …}\\n</tool_call>` block,
the name one of the allowed tools' and the arguments that tool's JSON schema, once or (with
parallel tool calls) one or more times. After the last block only an end-of-generation
token fits, so the model stops there. Thinking is off for such answers (the callers turn it
off whenever there is a grammar): a grammar over the whole answer leaves no room for a free
`<think>` block, and the engine's forced `</think>` (thinking budget) would bypass it.

Every schema passes the same checks before conversion: repetition bounds the converter
would spell out (the whole server's memory), `$ref`s it cannot follow, schemas that match
no value at all (llama.cpp's grammar sampler crashes on an empty rule) and grammars over
MAX_GRAMMAR (nested anyOfs multiply). Qwen3 writes a newline inside each tag; the grammar
allows but does not require it, as the parser does.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from edge.chat.tools import CLOSE, OPEN
from edge.engine import schema_grammar as engine_schema_grammar
from edge.errors import ParamError, UsageError

# The converter spells repetitions out, so its output (time and memory) grows with these
# bounds: {"minLength": 10**9} would take the whole server down.
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
MAX_REPEAT = 10_000
MAX_DEPTH = 64
MAX_GRAMMAR = 1_000_000  # characters of GBNF; real tool schemas make a few kB
_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_EMPTY_RULE = re.compile(r"::=[ \t]*$", re.MULTILINE)
_ROOT_RULE = re.compile(r"^root ::=", re.MULTILINE)
_LOCAL_REFS = ("#/$defs/", "#/definitions/")


@dataclass(frozen=True)
class ForcedCall:
    """A forced tool call: `name` the one tool it must call (None: any of them), and
    whether several calls may follow one another."""

    name: str | None
    parallel: bool


def openai_forced_call(
    choice: str | dict[str, Any] | None, parallel: bool | None, name: object, named_form: str
) -> ForcedCall | None:
    """The call an OpenAI-style `tool_choice` forces: "required" (any tool) or the named
    form (that one); None for "auto"/"none". Chat and Responses put the function's name in
    different places: the caller digs out `name`, and `named_form` spells its shape for
    the error."""
    if choice in (None, "auto", "none"):
        return None
    together = parallel is not False  # OpenAI's default: parallel calls allowed
    if choice == "required":
        return ForcedCall(None, together)
    if not isinstance(choice, dict) or choice.get("type") != "function":
        name = None
    if not isinstance(name, str):
        message = f"tool_choice is 'none', 'auto', 'required' or {named_form}."
        raise ParamError("tool_choice", message)
    return ForcedCall(name, together)


def answer_grammar(
    schema: dict[str, Any] | None,
    schema_param: str,
    tools: list[dict[str, Any]],
    forced: ForcedCall | None,
) -> str | None:
    """The grammar an answer is sampled under, if any: the JSON schema's (`schema_param`
    names the field that gave it), or the forced tool call's. Not both: each constrains
    the whole answer."""
    if forced is not None:
        if schema is not None:
            message = "A forced tool call and a JSON answer format cannot both shape the answer."
            raise ParamError("tool_choice", message)
        if not tools:
            raise ParamError(
                "tool_choice", "tool_choice forces a tool call, but no tools are given."
            )
        return tool_call_grammar(tools, forced)
    return None if schema is None else json_grammar(schema, schema_param)


def json_grammar(schema: dict[str, Any], param: str) -> str:
    """The grammar for answers that follow `schema`; a `ParamError` on `param` when the
    schema cannot (or must not) be converted."""
    check_schema(schema, param)
    return _converted(schema, param, "The JSON schema")


def tool_call_grammar(tools: list[dict[str, Any]], forced: ForcedCall) -> str:
    """The grammar for a forced call of `tools` (chat's function tools, as the template
    renders them). A schema that cannot be converted is refused on `tools`, naming the
    tool; a forced name that is no tool's, on `tool_choice`."""
    allowed = _allowed(tools, forced)
    alternatives: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for i, (name, parameters) in enumerate(allowed):
        with _naming(name):
            check_schema(parameters, "tools")
            schema = _hoisted(parameters, f"t{i}", defs)
        properties = {"name": {"const": name}, "arguments": schema}
        alternatives.append(
            {"type": "object", "properties": properties, "required": ["name", "arguments"]}
        )
    combined: dict[str, Any] = {"anyOf": alternatives} if len(alternatives) > 1 else alternatives[0]
    if defs:
        combined["$defs"] = defs
    try:
        calls = engine_schema_grammar(combined)
    except UsageError:
        calls = ""
    if not calls or _EMPTY_RULE.search(calls) or len(calls) > MAX_GRAMMAR:
        for name, parameters in allowed:  # find the tool at fault, for the message
            with _naming(name):
                _converted(parameters, "tools", "Its parameters schema")
        _check_grammar(calls, "tools", "The tools' schemas together")
        raise ParamError("tools", "The tools' schemas cannot be turned into a grammar.")
    return _wrapped(calls, forced.parallel)


@contextmanager
def _naming(tool: str) -> Iterator[None]:
    """Errors inside name the tool they are about."""
    try:
        yield
    except ParamError as exc:
        exc.message = f"Tool '{tool}': {exc.message}"
        exc.args = (exc.message,)
        raise


def check_schema(schema: Any, param: str, depth: int = 0) -> None:
    """Refuse what the grammar converter could not spell out or follow."""
    if depth > MAX_DEPTH:
        raise ParamError(param, "The JSON schema is nested too deeply.")
    if isinstance(schema, list):
        for item in schema:
            check_schema(item, param, depth + 1)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        _check_keyword(key, value, param)
        check_schema(value, param, depth + 1)


def _check_keyword(key: str, value: Any, param: str) -> None:
    if key in _BOUNDS and isinstance(value, (int, float)) and value > MAX_REPEAT:
        raise ParamError(param, f"'{key}' over {MAX_REPEAT} is not supported.")
    if key == "pattern" and isinstance(value, str) and _too_many_repeats(value):
        raise ParamError(param, f"Repetitions over {MAX_REPEAT} are not supported in 'pattern'.")


def _too_many_repeats(pattern: str) -> bool:
    """Whether a regex asks for a repetition count `{n}`/`{n,m}` over MAX_REPEAT."""
    return any(
        max(len(low), len(high)) > 5 or max(int(low), int(high or 0)) > MAX_REPEAT
        for low, high in _REPEAT.findall(pattern)
    )


def _converted(schema: Any, param: str, what: str) -> str:
    try:
        grammar = engine_schema_grammar(schema if isinstance(schema, dict) else {})
    except UsageError as exc:
        raise ParamError(param, f"{what}: {exc.message}") from None
    _check_grammar(grammar, param, what)
    return grammar


def _check_grammar(grammar: str, param: str, what: str) -> None:
    if _EMPTY_RULE.search(grammar):
        raise ParamError(param, f"{what} matches no value at all.")
    if len(grammar) > MAX_GRAMMAR:  # llama.cpp would compile it per request, on every step
        raise ParamError(param, f"{what} makes a grammar over {MAX_GRAMMAR // 1000} kB.")


def _allowed(tools: list[dict[str, Any]], forced: ForcedCall) -> list[tuple[str, dict[str, Any]]]:
    """(name, parameters schema) of each tool the forced call may name."""
    found = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise ParamError(f"tools[{i}]", "A function tool needs a 'name' string.")
        parameters = function.get("parameters") if isinstance(function, dict) else None
        if parameters is not None and not isinstance(parameters, dict):
            raise ParamError(f"tools[{i}]", f"Tool '{name}': 'parameters' is a JSON schema.")
        if forced.name is None or forced.name == name:
            found.append((name, parameters or {"type": "object"}))
    if not found:
        raise ParamError("tool_choice", f"There is no tool named '{forced.name}' to call.")
    return found


def _hoisted(parameters: dict[str, Any], prefix: str, defs: dict[str, Any]) -> Any:
    """`parameters` with its `$defs`/`definitions` moved into `defs` under names that start
    with `prefix` (each tool's schema becomes one branch of a bigger one, where `#` is no
    longer its root), and its `$ref`s pointed at them."""
    schema = copy.deepcopy(parameters)
    for key in ("$defs", "definitions"):
        inner = schema.pop(key, None)
        if isinstance(inner, dict):
            defs.update({f"{prefix}-{k}": _relinked(v, prefix, 0) for k, v in inner.items()})
    return _relinked(schema, prefix, 0)


def _relinked(node: Any, prefix: str, depth: int) -> Any:
    if depth > MAX_DEPTH:  # check_schema refused deeper ones already; defs are checked here
        raise ParamError("tools", "The JSON schema is nested too deeply.")
    if isinstance(node, list):
        return [_relinked(x, prefix, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _relinked(v, prefix, depth + 1) for k, v in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str):
        local = next((p for p in _LOCAL_REFS if ref.startswith(p)), None)
        if local is None:
            message = f"$ref '{ref[:60]}': only '#/$defs/…' references are supported."
            raise ParamError("tools", message)
        out["$ref"] = f"#/$defs/{prefix}-{ref[len(local) :]}"
    return out


def _wrapped(calls: str, parallel: bool) -> str:
    """The converter's grammar for one call's JSON, inside Qwen3's tool-call blocks."""
    body = _ROOT_RULE.sub("edge-forced-call ::=", calls)
    block = f'"{OPEN}" "\\n"? edge-forced-call "\\n"? "{CLOSE}"'
    more = ' ("\\n" edge-forced-block)*' if parallel else ""
    return f"root ::= edge-forced-block{more}\nedge-forced-block ::= {block}\n{body}"
