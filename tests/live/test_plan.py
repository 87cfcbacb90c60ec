"""The load plan against real files: the header of a converted GGUF, and the compute
buffer llama.cpp reports when it loads one. The arithmetic alone: tests/unit/test_plan.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import Settings
from edge.engine.plan import (
    compute_bytes,
    make_plan,
    read_model_info,
)

MiB = 1 << 20


def test_reads_the_header_of_a_real_file(gguf_of: Callable[[str, str], Path]) -> None:
    info = read_model_info(gguf_of("tiny", "Q8_0"))
    assert (info.layers, info.kv_heads, info.head_dim, info.ctx_train) == (2, 2, 64, 40960)
    assert info.file_type == "Q8_0" and info.name == "Qwen3-tiny"
    assert 0 < info.weights_bytes < gguf_of("tiny", "Q8_0").stat().st_size


@pytest.mark.parametrize(
    ("ctx", "fa", "parallel"),
    [(2048, False, 1), (16384, False, 1), (2048, True, 1), (16384, True, 4), (4096, False, 1)],
)
def test_compute_estimate_covers_what_llama_cpp_reserves(
    gguf_of: Callable[[str, str], Path], ctx: int, fa: bool, parallel: int
) -> None:
    from edge.engine import Engine
    from edge.engine.llama_log import captured_llama_log

    path = gguf_of("tiny", "Q8_0")
    info = read_model_info(path)
    plan = make_plan(info, Settings(ctx=ctx, flash_attn=fa, parallel=parallel, threads=1))
    with captured_llama_log() as lines:
        engine = Engine(path, plan, info)
    engine.close()
    sizes = [
        float(m.group(1))
        for line in lines
        if (m := re.search(r"CPU compute buffer size = +([\d.]+) MiB", line))
    ]
    assert sizes, lines[-20:]
    reported = sizes[-1] * MiB
    estimate = compute_bytes(info, ctx, fa, plan.n_outputs_max)
    # The estimate counts one logits row per sequence. Had an engine not capped llama.cpp's
    # outputs, it would have reserved 512 rows of 151,936 floats: ~280 MiB over the estimate.
    assert reported <= estimate <= reported * 1.25 + 2 * MiB, (reported / MiB, estimate / MiB)
