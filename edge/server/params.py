"""Request fields every API shares, checked before they reach the engine.

Each check refuses with a `ParamError` naming the field (HTTP 400) what would otherwise
fail deep in the tokenizer or llama.cpp, or crash the whole server there.
"""

from __future__ import annotations

import re
from typing import Any

from edge.engine import schema_grammar as engine_schema_grammar
from edge.errors import ParamError, UsageError
from edge.server.schema import ResponseFormat


def check_text(text: str, param: str) -> None:
    """Refuse text that is not valid Unicode: JSON's "\\ud800" escapes decode to lone
    surrogates, which have no UTF-8 and would fail deep in the tokenizer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        message = f"The text holds a lone surrogate (at {exc.start}): not valid Unicode."
        raise ParamError(param, message) from None


def thinking_budget(spellings: dict[str, int | None]) -> int | None:
    """The one thinking budget from the fields that may set it (vLLM's
    `thinking_token_budget`, llama.cpp's `reasoning_budget`, each API's own form), keyed by
    the field's name as the client wrote it. Fields that disagree are refused by name."""
    given = {name: value for name, value in spellings.items() if value is not None}
    for name, value in given.items():
        if value < 0:
            raise ParamError(name, f"A thinking budget is a count of tokens, not {value}.")
    if len(set(given.values())) > 1:
        names = " and ".join(f"'{n}' ({v})" for n, v in given.items())
        raise ParamError(next(iter(given)), f"The thinking budgets {names} disagree: give one.")
    return next(iter(given.values()), None)


def stop_list(stop: str | list[str] | None) -> list[str]:
    """OpenAI's `stop` (one string or several) as a list."""
    return [stop] if isinstance(stop, str) else list(stop or [])


def parse_logit_bias(raw: dict[str, float] | None, n_vocab: int | None = None) -> dict[int, float]:
    """OpenAI's logit_bias (string token ids, values -100…100) as llama.cpp wants it.

    Ids are checked against the vocabulary: llama.cpp indexes its logits with them
    unchecked, so an id past the end crashes the whole server.
    """
    out = {}
    for key, value in (raw or {}).items():
        if not _TOKEN_ID.fullmatch(key):
            raise ParamError(
                "logit_bias", f"logit_bias keys are token ids; '{key[:40]}' is not one."
            )
        token = int(key)
        if n_vocab is not None and token >= n_vocab:
            raise ParamError(
                "logit_bias", f"Token id {token} is not in the vocabulary (0…{n_vocab - 1})."
            )
        if not -100 <= value <= 100:  # also refuses NaN
            raise ParamError("logit_bias", f"logit_bias values go from -100 to 100, not {value}.")
        out[token] = float(value)  # ±100 bans or forces a token, as with OpenAI
    return out


_TOKEN_ID = re.compile(r"[0-9]{1,10}")


def response_schema(rf: ResponseFormat | None) -> dict[str, Any] | None:
    """The JSON schema the answer must follow, if any, once it is known to be one that
    the grammar converter and llama.cpp's grammar sampler can take."""
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "object"}
    schema = (rf.json_schema or {}).get("schema")
    if not isinstance(schema, dict):
        raise ParamError("response_format", "json_schema needs a 'schema' object.")
    _check_bounds(schema)
    if _EMPTY_RULE.search(_schema_grammar(schema)):
        # An empty enum/anyOf/type list: no text can match, and llama.cpp's grammar
        # sampler crashes the whole server on such a grammar instead of failing.
        raise ParamError("response_format", "The JSON schema matches no value at all.")
    return schema


_EMPTY_RULE = re.compile(r"::=[ \t]*$", re.MULTILINE)


# The grammar converter spells repetitions out, so its output (time and memory) grows with
# these bounds: {"minLength": 10**9} would take the whole server down.
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
MAX_REPEAT = 10_000
_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def _check_bounds(schema: Any, depth: int = 0) -> None:
    """Refuse repetition bounds the grammar converter could not spell out."""
    if depth > 64:
        raise ParamError("response_format", "The JSON schema is nested too deeply.")
    if isinstance(schema, list):
        for item in schema:
            _check_bounds(item, depth + 1)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in _BOUNDS and isinstance(value, (int, float)) and value > MAX_REPEAT:
            raise ParamError("response_format", f"'{key}' over {MAX_REPEAT} is not supported.")
        if key == "pattern" and isinstance(value, str) and _too_many_repeats(value):
            message = f"Repetitions over {MAX_REPEAT} are not supported in 'pattern'."
            raise ParamError("response_format", message)
        _check_bounds(value, depth + 1)


def _too_many_repeats(pattern: str) -> bool:
    """Whether a regex asks for a repetition count `{n}`/`{n,m}` over MAX_REPEAT."""
    return any(
        max(len(low), len(high)) > 5 or max(int(low), int(high or 0)) > MAX_REPEAT
        for low, high in _REPEAT.findall(pattern)
    )


def _schema_grammar(schema: dict[str, Any]) -> str:
    try:
        return engine_schema_grammar(schema)
    except UsageError as exc:
        raise ParamError("response_format", exc.message) from None
