"""Request fields every API shares, checked before they reach the engine.

Each check refuses with a `ParamError` naming the field (HTTP 400) what would otherwise
fail deep in the tokenizer or llama.cpp, or crash the whole server there.
"""

from __future__ import annotations

import re
from typing import Any

from edge.chat.sampling import qwen_sampling
from edge.engine import SamplingParams
from edge.errors import ParamError
from edge.server.wire import ResponseFormat, SamplingFields


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
    """The JSON schema the answer must follow, if any; `grammar.json_grammar` checks and
    converts it."""
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "object"}
    schema = (rf.json_schema or {}).get("schema")
    if not isinstance(schema, dict):
        raise ParamError("response_format", "json_schema needs a 'schema' object.")
    return schema


def openai_sampling(
    thinking: bool, req: SamplingFields, n_vocab: int | None, **fixed: Any
) -> SamplingParams:
    """Qwen's sampling for the mode with what chat and text completions share (the fields of
    `wire.SamplingFields`: the sampling knobs, penalties, seed, logit_bias, stop); `fixed`
    are the other SamplingParams fields, each API's own."""
    return qwen_sampling(
        thinking,
        req,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        seed=req.seed,
        logit_bias=parse_logit_bias(req.logit_bias, n_vocab),
        stop=stop_list(req.stop),
        **fixed,
    )


def fit_to_room(params: SamplingParams, prompt_tokens: int, n_ctx: int) -> bool:
    """Cut `params.max_tokens` to the room the context leaves after the prompt; True if it
    was cut. Agents send their model's largest output whatever the context (Qwen Code
    32,768, opencode and Claude Code 32,000), so refusing the sum would refuse them all; an
    answer that fills the room ends with the API's length reason, as llama-server's does.
    A prompt that leaves no room is not cut: the engine's check refuses it (400)."""
    room = n_ctx - prompt_tokens
    if params.max_tokens is not None and 0 < room < params.max_tokens:
        params.max_tokens = room
        return True
    return False
