"""`edge-qwen doctor`'s account of a plan, term by term, on Qwen3-0.6B's sizes (no model,
no process). The command itself, on this machine: tests/live/test_doctor.py."""

from __future__ import annotations

from pathlib import Path

from edge.config import Settings
from edge.engine.doctor import plan_data, render_plan
from edge.engine.plan import Budget, make_plan
from tests.support.plan import QWEN3_06B, GiB


def test_the_arithmetic_of_a_gpu_plan_reads_term_by_term() -> None:
    budget = Budget("NVIDIA GeForce RTX 4060", 8 * GiB, 7 * GiB, 16 * GiB)
    plan = make_plan(QWEN3_06B, Settings(ctx=4096), gpu_offload=True, budget=budget)
    lines = render_plan(plan_data(Path("m.gguf"), QWEN3_06B, plan))
    text = "\n".join(lines)
    assert lines[0].startswith("plan: Qwen3-0.6B Q8_0 · NVIDIA GeForce RTX 4060: 29/29 layers")
    assert "layers: 28 × 16 MiB, 28 of them on the GPU" in text
    assert "output layer: 158 MiB on the GPU (a copy of the tied embedding)" in text
    assert "KV cache: 112 KiB/token × 4096 tokens = 448 MiB (f16, GPU)" in text
    # weights 604 + KV 448 + compute 32 = 1,084 MiB; headroom 8% of 8 GiB + 192 MiB = 847.
    assert (
        "VRAM: 604 MiB weights + 448 MiB KV + 32 MiB compute = 1,084 MiB of 6,321 MiB usable"
        in text
    )
    assert "(7,168 MiB free − 847 MiB headroom)" in text
    assert "flash attention on: on a GPU it is faster" in text
    assert "shelf: up to 2048 MiB of RAM (an eighth of free RAM" in text

    split = make_plan(
        QWEN3_06B,
        Settings(ctx=32768),
        gpu_offload=True,
        budget=Budget("laptop", 4 * GiB, 1500 * 2**20, 16 * GiB),
    )
    text = "\n".join(render_plan(plan_data(Path("m.gguf"), QWEN3_06B, split)))
    assert f"{split.n_gpu_layers} of them on the GPU" in text and "GPU + " in text  # KV split
    assert "output layer: the token embedding (tied) in RAM" in text


def test_a_cpu_plan_says_why_flash_attention_is_off_and_what_the_shelf_holds() -> None:
    budget = Budget(ram_available=4 * GiB)
    plan = make_plan(QWEN3_06B, Settings(ctx=8192), gpu_offload=False, budget=budget)
    text = "\n".join(render_plan(plan_data(Path("m.gguf"), QWEN3_06B, plan)))
    assert "flash attention off: on a CPU llama.cpp decodes faster without it" in text
    assert "shelf: up to 512 MiB of RAM (an eighth of free RAM, at most 2048 MiB)" in text
    assert "and the shelf up to 512 MiB" in text
    asked = make_plan(QWEN3_06B, Settings(cache_ram=0, flash_attn=True), gpu_offload=False)
    text = "\n".join(render_plan(plan_data(Path("m.gguf"), QWEN3_06B, asked)))
    assert "flash attention on: as asked" in text and "shelf: none (--cache-ram 0)" in text
