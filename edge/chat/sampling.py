"""Qwen's recommended sampling, once for every caller: the terminal chat, the server's APIs.

A request (or a turn's knobs) may give temperature, top_p, top_k and min_p; what it leaves
out is Qwen's recommendation for the mode, thinking or not (edge.config.QWEN3_SAMPLING).
"""

from __future__ import annotations

from typing import Any

from edge.config import QWEN3_SAMPLING
from edge.engine import SamplingParams


def sampling_defaults(thinking: bool) -> dict[str, float]:
    """Qwen's recommended temperature, top_p, top_k and min_p for thinking or non-thinking mode."""
    return dict(QWEN3_SAMPLING[bool(thinking)])


def qwen_sampling(
    thinking: bool,
    *,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    min_p: float | None = None,
    **fixed: Any,
) -> SamplingParams:
    """Sampling params: what the request gave, Qwen's recommendation for the mode (thinking
    or not) where it gave none; `fixed` are the other SamplingParams fields as given."""
    base = sampling_defaults(thinking)
    return SamplingParams(
        temperature=_pick(temperature, base["temperature"]),
        top_p=_pick(top_p, base["top_p"]),
        top_k=int(_pick(top_k, base["top_k"])),
        min_p=_pick(min_p, base["min_p"]),
        **fixed,
    )


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value
