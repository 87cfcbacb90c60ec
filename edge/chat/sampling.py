"""Qwen's recommended sampling, once for every caller: the terminal chat, the server's APIs.

A request (or a turn's knobs) may set temperature, top_p, top_k and min_p; what it leaves
out is Qwen's recommendation for the mode, thinking or not (edge.config.QWEN3_SAMPLING).
"""

from __future__ import annotations

from typing import Any

from edge.config import QWEN3_SAMPLING
from edge.engine import SamplingParams


def sampling_defaults(thinking: bool) -> dict[str, float]:
    """Qwen's recommended temperature, top_p, top_k and min_p for thinking or non-thinking mode."""
    return dict(QWEN3_SAMPLING[bool(thinking)])


def qwen_sampling(thinking: bool, given: object, **fixed: Any) -> SamplingParams:
    """Sampling params: the temperature, top_p, top_k and min_p that `given` (a request
    model, a turn's knobs: any object, an attribute it lacks or holds as None is "not
    given") sets, Qwen's recommendation for the mode (thinking or not) for the rest;
    `fixed` are the other SamplingParams fields as they are."""
    base = sampling_defaults(thinking)

    def pick(name: str) -> float:
        value = getattr(given, name, None)
        return base[name] if value is None else value

    return SamplingParams(
        temperature=pick("temperature"),
        top_p=pick("top_p"),
        top_k=int(pick("top_k")),
        min_p=pick("min_p"),
        **fixed,
    )
