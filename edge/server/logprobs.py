"""Log-probabilities in OpenAI's two shapes: chat's per-token objects, and the legacy
completions object (parallel lists), which loglikelihood harnesses read.

The engine computes them (`TokenLogprob`, the softmax of the logits before sampling);
this module only checks what a request asks for and writes the answer's fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.engine import TokenLogprob
from edge.errors import ParamError

MAX_TOP = 20  # alternatives per token, as OpenAI allows


def top_count(value: int | None, param: str) -> int:
    """A checked count of alternatives (0 when not given)."""
    if value is None:
        return 0
    if not 0 <= value <= MAX_TOP:
        raise ParamError(param, f"'{param}' goes from 0 to {MAX_TOP}, not {value}.")
    return value


def chat_request(logprobs: bool | int | None, top_logprobs: int | None) -> int | None:
    """Chat's `logprobs` (a bool) and `top_logprobs` as the engine's count, None for off."""
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ParamError("logprobs", "For chat, 'logprobs' is true or false.")
    top = top_count(top_logprobs, "top_logprobs")
    if top_logprobs is not None and not logprobs:
        raise ParamError("top_logprobs", "'top_logprobs' needs 'logprobs': true.")
    return top if logprobs else None


def text(lp: TokenLogprob) -> str:
    """A token as a string: its bytes as UTF-8, a partial character replaced by U+FFFD
    (the exact bytes are in `bytes`)."""
    return lp.piece.decode("utf-8", errors="replace")


def chat_entry(lp: TokenLogprob) -> dict[str, Any]:
    """One token of chat's `logprobs.content`."""
    return {
        "token": text(lp),
        "logprob": lp.logprob,
        "bytes": list(lp.piece),
        "top_logprobs": [
            {"token": text(t), "logprob": t.logprob, "bytes": list(t.piece)} for t in lp.top
        ],
    }


def chat_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Chat's `choices[].logprobs` object."""
    return {"content": entries, "refusal": None}


def legacy(tokens: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The completions API's `logprobs`: tokens, their logprobs, each position's
    alternatives as {token: logprob} (None where nothing predicts the token, as for a
    prompt's first), and each token's offset in the text, starting at `offset`."""
    out: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    for lp in tokens:
        token = text(lp)
        out["tokens"].append(token)
        out["token_logprobs"].append(lp.logprob)
        top = None if lp.logprob is None else {text(t): t.logprob for t in lp.top}
        out["top_logprobs"].append(top)
        out["text_offset"].append(offset)
        offset += len(token)
    return out
