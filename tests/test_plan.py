"""The load plan: pure arithmetic from a GGUF header, no model loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge.errors import UsageError
from edge.plan import ModelInfo, make_plan, read_model_info

QWEN3_06B = ModelInfo(Path("m.gguf"), "Qwen3-0.6B", "Q8_0", layers=28, kv_heads=8, head_dim=128,
                      ctx_train=40960, weights_bytes=633_000_000)  # fmt: skip


def test_kv_cache_per_token_is_qwen3_0_6b_s() -> None:
    assert QWEN3_06B.kv_bytes_per_token("f16") == 112 * 1024  # 28 x 8 x 128 x 2 x 2 bytes
    assert QWEN3_06B.kv_bytes_per_token("q8_0") == 28 * 8 * 128 * 2 * 34 / 32
    plan = make_plan(QWEN3_06B, n_ctx=32768, threads=4, gpu_offload=False)
    assert plan.kv_bytes == 112 * 1024 * 32768  # 3.5 GiB at the recommended context


def test_defaults_and_overrides() -> None:
    plan = make_plan(QWEN3_06B, gpu_offload=False)
    assert (plan.n_ctx, plan.kv_type, plan.flash_attn, plan.n_gpu_layers) == (8192, "f16", False, 0)
    assert make_plan(QWEN3_06B, kv_type="q8_0", gpu_offload=False).flash_attn  # q8_0 KV needs it
    assert make_plan(QWEN3_06B, flash_attn=True, gpu_offload=False).flash_attn
    assert make_plan(QWEN3_06B, threads=3, gpu_offload=False).n_threads == 3


def test_cpu_plans_read_the_file_gpu_plans_map_it() -> None:
    # On CPU a mapped file plus llama.cpp's repacked copy would hold the weights twice.
    assert make_plan(QWEN3_06B, gpu_offload=False).use_mmap is False
    assert make_plan(QWEN3_06B, n_gpu_layers=99, gpu_offload=True).use_mmap is True


def test_describe_is_one_line() -> None:
    line = make_plan(QWEN3_06B, threads=2, gpu_offload=False).describe(QWEN3_06B)
    assert (
        line == "Qwen3-0.6B Q8_0 · CPU, 2 threads · ctx 8192 · KV f16 (896 MiB) · weights 604 MiB"
    )


def test_gpu_layers_without_a_gpu_build_fall_back_and_say_so() -> None:
    plan = make_plan(QWEN3_06B, n_gpu_layers=99, gpu_offload=False)
    assert plan.n_gpu_layers == 0 and "no GPU offload" in plan.describe(QWEN3_06B)
    on_gpu = make_plan(QWEN3_06B, n_gpu_layers=99, gpu_offload=True)
    assert "28/28 layers on GPU" in on_gpu.describe(QWEN3_06B) and on_gpu.flash_attn


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_ctx": 50_000}, "outside 64..40960"),
        ({"n_ctx": 10}, "outside 64..40960"),
        ({"kv_type": "q4"}, "Unknown KV-cache type"),
        ({"kv_type": "q8_0", "flash_attn": False}, "needs flash attention"),
    ],
)
def test_bad_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_plan(QWEN3_06B, gpu_offload=False, **kwargs)  # type: ignore[arg-type]


def test_reads_the_header_of_a_real_file(gguf_of: Callable[[str, str], Path]) -> None:
    info = read_model_info(gguf_of("tiny", "Q8_0"))
    assert (info.layers, info.kv_heads, info.head_dim, info.ctx_train) == (2, 2, 64, 40960)
    assert info.file_type == "Q8_0" and info.name == "Qwen3-tiny"
    assert 0 < info.weights_bytes < gguf_of("tiny", "Q8_0").stat().st_size
