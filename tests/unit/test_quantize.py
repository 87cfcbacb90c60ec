"""The quantization types `edge-qwen quantize` offers (no model). Each one through
llama.cpp's quantizer: tests/live/test_quantize.py."""

from __future__ import annotations

from edge.model.quantize import QUANT_TYPES


def test_offers_the_types_the_issue_names() -> None:
    assert {"Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16"} <= set(QUANT_TYPES)
