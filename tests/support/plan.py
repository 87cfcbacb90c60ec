"""Qwen3-0.6B as the load plan sees it (edge.engine.plan.ModelInfo), without a model file."""

from __future__ import annotations

from pathlib import Path

from edge.engine.plan import ModelInfo

# Qwen3-0.6B's tensor sizes, read from the synthetic 0.6b-shaped GGUFs (`edge-qwen bench`
# makes them): Q8_0 has 28 equal blocks; Q4_K_M gives some layers Q6_K tensors, as llama.cpp's
# quantizer does. The lm head is tied: the embedding again (+ the 4 KiB output norm).
QWEN3_06B = ModelInfo(
    Path("m.gguf"),
    "Qwen3-0.6B",
    "Q8_0",
    layers=28,
    kv_heads=8,
    head_dim=128,
    ctx_train=40960,
    weights_bytes=633_495_552,
    layer_bytes=(16_720_896,) * 28,
    embd_bytes=165_306_368,
    output_bytes=165_310_464,
)
_BIG, _SMALL = 9_937_920, 8_856_576
QWEN3_06B_Q4 = ModelInfo(
    Path("m.gguf"),
    "Qwen3-0.6B",
    "Q4_K_M",
    layers=28,
    kv_heads=8,
    head_dim=128,
    ctx_train=40960,
    weights_bytes=390_753_280,
    layer_bytes=(_BIG,) * 3 + (_SMALL, _SMALL, _BIG) * 7 + (_BIG,) * 4,
    embd_bytes=127_626_240,
    output_bytes=127_630_336,
)
GiB = 1 << 30
