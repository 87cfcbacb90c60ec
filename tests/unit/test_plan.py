"""The load plan: pure arithmetic from a GGUF header, no model loaded. Against real files
and llama.cpp's own figures: tests/live/test_plan.py."""

from __future__ import annotations

import pytest

from edge.config import Settings
from edge.engine.plan import (
    Budget,
    ModelInfo,
    compute_bytes,
    footprint,
    make_plan,
    smaller,
)
from edge.errors import OutOfMemoryError, UsageError
from tests.support.plan import QWEN3_06B, QWEN3_06B_Q4, GiB

RAM = 16 * GiB


def test_kv_cache_per_token_is_qwen3_0_6b_s() -> None:
    assert QWEN3_06B.kv_bytes_per_token("f16") == 112 * 1024  # 28 x 8 x 128 x 2 x 2 bytes
    assert QWEN3_06B.kv_bytes_per_token("q8_0") == 28 * 8 * 128 * 2 * 34 / 32
    plan = make_plan(QWEN3_06B, Settings(ctx=32768, threads=4), gpu_offload=False)
    assert plan.kv_bytes == 112 * 1024 * 32768  # 3.5 GiB at the recommended context


def test_defaults_and_overrides() -> None:
    plan = make_plan(QWEN3_06B, gpu_offload=False)
    assert (plan.n_ctx, plan.kv_type, plan.flash_attn, plan.n_gpu_layers) == (8192, "f16", False, 0)
    assert make_plan(
        QWEN3_06B, Settings(kv="q8_0"), gpu_offload=False
    ).flash_attn  # q8_0 KV needs it
    assert make_plan(QWEN3_06B, Settings(flash_attn=True), gpu_offload=False).flash_attn
    assert make_plan(QWEN3_06B, Settings(threads=3), gpu_offload=False).n_threads == 3


def test_cpu_plans_read_the_file_gpu_plans_map_it() -> None:
    # On CPU a mapped file plus llama.cpp's repacked copy would hold the weights twice.
    assert make_plan(QWEN3_06B, gpu_offload=False).use_mmap is False
    # Fully offloaded, llama.cpp unmaps what went to the GPU; partly, the CPU layers repack.
    assert make_plan(QWEN3_06B, Settings(gpu_layers=99), gpu_offload=True).use_mmap is True
    assert make_plan(QWEN3_06B, Settings(gpu_layers=20), gpu_offload=True).use_mmap is False


def test_describe_is_one_line() -> None:
    plan = make_plan(
        QWEN3_06B,
        Settings(threads=2, cache_disk=1024),
        gpu_offload=False,
        budget=Budget(None, 0, 0, RAM),
    )
    assert plan.describe(QWEN3_06B) == (
        "Qwen3-0.6B Q8_0 · CPU, 2 threads · ctx 8192 · KV f16 (896 MiB) · weights 604 MiB"
        " · shelf ≤ 2048 MiB · disk cache ≤ 1024 MiB"
    )


def test_gpu_layers_without_a_gpu_build_fall_back_and_say_so() -> None:
    plan = make_plan(QWEN3_06B, Settings(gpu_layers=99), gpu_offload=False)
    assert plan.n_gpu_layers == 0 and "no GPU offload" in plan.describe(QWEN3_06B)
    on_gpu = make_plan(QWEN3_06B, Settings(gpu_layers=99), gpu_offload=True)
    assert "29/29 layers" in on_gpu.describe(QWEN3_06B) and on_gpu.flash_attn


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ctx": 50_000}, "outside 64..40960"),
        ({"ctx": 10}, "Invalid --ctx: Input should be greater than or equal to 64"),
        ({"kv": "q4"}, "Invalid --kv: Input should be 'f16', 'q8_0' or 'f32'"),
        ({"kv": "q8_0", "flash_attn": False}, "needs flash attention"),
        ({"parallel": 65}, "Invalid --parallel: Input should be less than or equal to 64"),
    ],
)
def test_bad_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_plan(QWEN3_06B, Settings.load({}, **kwargs), gpu_offload=False)


# -- the fit planner on a table of cards -----------------------------------------------

MiB = 1 << 20
# (name, total VRAM, free VRAM): what a desktop or laptop leaves free with a desktop running.
CARDS = [
    ("2 GB laptop", 2 * GiB, int(1.6 * GiB)),
    ("4 GB laptop", 4 * GiB, int(3.3 * GiB)),
    ("6 GB laptop", 6 * GiB, int(5.2 * GiB)),
    ("RTX 4060 8 GB", 8 * GiB, int(7.3 * GiB)),
    ("12 GB", 12 * GiB, int(11.2 * GiB)),
    ("nothing free", 8 * GiB, 100 * MiB),
]
CONTEXTS = [2048, 8192, 16384, 32768, 40960]


def _card(name: str, total: int, free: int) -> Budget:
    return Budget(name, total, free, RAM)


@pytest.mark.parametrize("info", [QWEN3_06B, QWEN3_06B_Q4], ids=["Q8_0", "Q4_K_M"])
@pytest.mark.parametrize("card", CARDS, ids=[c[0] for c in CARDS])
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_every_card_and_context_gets_a_plan_that_fits(
    info: ModelInfo, card: tuple[str, int, int], ctx: int
) -> None:
    budget = _card(*card)
    plan = make_plan(info, Settings(ctx=ctx), gpu_offload=True, budget=budget)
    whole = info.layers + 1
    assert plan.n_ctx == ctx  # an asked-for context is kept: layers move to RAM instead
    assert plan.vram_bytes <= budget.vram_budget  # never more than is free after headroom
    fits = {
        kv: footprint(info, whole, ctx, kv, True).vram <= budget.vram_budget
        for kv in ("f16", "q8_0")
    }
    if fits["f16"]:
        assert (plan.n_gpu_layers, plan.kv_type, plan.notes) == (whole, "f16", ())
    elif fits["q8_0"]:
        assert (plan.n_gpu_layers, plan.kv_type) == (whole, "q8_0")
        assert any("KV cache q8_0" in n for n in plan.notes)
    elif plan.n_gpu_layers:  # partial offload: the most layers that fit, and it says so
        more = footprint(info, plan.n_gpu_layers + 1, ctx, plan.kv_type, True).vram
        assert 0 < plan.n_gpu_layers < whole and more > budget.vram_budget
        assert any(f"{plan.n_gpu_layers}/{whole} layers on the GPU" in n for n in plan.notes)
    else:
        assert any("running on the CPU" in n for n in plan.notes)
    assert plan.flash_attn == bool(plan.n_gpu_layers)  # GPU: faster, no K·Q matrix in VRAM
    assert plan.gpu == (card[0] if plan.n_gpu_layers else None)


def test_the_table_reads_as_expected() -> None:
    """A few rows checked by hand, so that the rule above cannot drift unnoticed."""

    def where(card: int, ctx: int) -> tuple[int, str]:
        plan = make_plan(QWEN3_06B, Settings(ctx=ctx), gpu_offload=True, budget=_card(*CARDS[card]))
        return plan.n_gpu_layers, plan.kv_type

    assert where(3, 40960) == (29, "f16")  # an RTX 4060 holds even the full 40k context
    assert where(1, 32768) == (29, "q8_0")  # a 4 GB laptop: q8_0 cache to keep 32k on the GPU
    assert where(1, 8192) == (29, "f16")
    assert where(0, 2048) == (29, "f16")  # 2 GB: short contexts fit whole ...
    assert 0 < where(0, 32768)[0] < 29  # ... long ones leave layers in RAM
    assert where(5, 8192) == (0, "f16")  # nothing free: the CPU


def test_the_seed_figure_for_an_rtx_4060() -> None:
    # The 0.6B model on an RTX 4060 takes about 1.2 GB: Q8_0 weights (604 MiB) + a 4,096-token
    # f16 cache (448 MiB) + a compute buffer of ~32 MiB.
    plan = make_plan(QWEN3_06B, Settings(ctx=4096), gpu_offload=True, budget=_card(*CARDS[3]))
    assert plan.n_gpu_layers == 29 and 1.0e9 < plan.vram_bytes < 1.3e9, plan.vram_bytes
    fp = footprint(QWEN3_06B, 29, 4096, "f16", True)
    assert fp.gpu_kv == 448 * MiB and fp.gpu_weights == 28 * 16_720_896 + 165_310_464
    assert fp.ram_weights == 165_306_368  # the input embedding stays in RAM


def test_without_a_context_asked_for_the_gpu_plan_shrinks_it_before_splitting() -> None:
    # 1,100 MiB usable: 8,192 tokens do not fit whole even with q8_0 (1,114 MiB), 4,096 in
    # f16 do (1,084 MiB).
    budget = _card("small", 2 * GiB, 1548 * MiB)
    assert budget.vram_budget == 1100 * MiB
    plan = make_plan(QWEN3_06B, gpu_offload=True, budget=budget)
    assert (plan.n_gpu_layers, plan.n_ctx) == (29, 4096), plan.notes
    assert any("context 4096" in n for n in plan.notes)
    asked = make_plan(QWEN3_06B, Settings(ctx=8192), gpu_offload=True, budget=budget)
    assert asked.n_ctx == 8192 and asked.n_gpu_layers < 29  # asked for: kept, layers split


def test_no_gpu_and_no_gpu_build_give_a_cpu_plan_without_fuss() -> None:
    for plan in (
        make_plan(QWEN3_06B, gpu_offload=True, budget=Budget(ram_available=RAM)),
        make_plan(QWEN3_06B, gpu_offload=False, budget=Budget(ram_available=RAM)),
    ):
        assert (plan.n_gpu_layers, plan.n_ctx, plan.kv_type, plan.notes) == (0, 8192, "f16", ())
        assert plan.vram_bytes == 0 and plan.ram_bytes < 2 * GiB


def test_explicit_layers_are_kept_with_a_warning_when_they_look_too_big() -> None:
    plan = make_plan(
        QWEN3_06B, Settings(ctx=32768, gpu_layers=99), gpu_offload=True, budget=_card(*CARDS[0])
    )
    assert plan.n_gpu_layers == 29 and any("if loading fails" in n for n in plan.notes)
    assert (
        make_plan(
            QWEN3_06B, Settings(gpu_layers=0), gpu_offload=True, budget=_card(*CARDS[3])
        ).n_gpu_layers
        == 0
    )


def test_little_ram_shrinks_the_context_and_says_so() -> None:
    plan = make_plan(
        QWEN3_06B, Settings(ctx=32768), gpu_offload=False, budget=Budget(ram_available=2 * GiB)
    )
    assert plan.n_ctx < 32768 and plan.ram_bytes <= 2 * GiB
    assert any("instead of the requested 32768" in n for n in plan.notes), plan.notes
    with pytest.raises(OutOfMemoryError, match="needs at least .* MiB of RAM; 300 MiB"):
        make_plan(QWEN3_06B, gpu_offload=False, budget=Budget(ram_available=300 * MiB))


def test_after_running_out_of_memory_each_retry_is_smaller() -> None:
    full = make_plan(QWEN3_06B, Settings(ctx=8192), gpu_offload=True, budget=_card(*CARDS[3]))
    # Another program took most of the card since: a fresh plan from what is free now.
    now = _card("RTX 4060 8 GB", 8 * GiB, 1500 * MiB)
    fresh = smaller(QWEN3_06B, full, now)
    assert fresh is not None and 0 < fresh.n_gpu_layers < 29 and fresh.n_ctx == 8192
    assert fresh.vram_bytes <= now.vram_budget and "re-planned" in fresh.notes[-1]
    # Nothing better to re-plan with: half the layers each time, then the CPU.
    steps, plan = [], full
    while (nxt := smaller(QWEN3_06B, plan)) is not None and len(steps) < 20:
        steps.append((nxt.n_gpu_layers, nxt.n_ctx))
        plan = nxt
    assert steps == [
        (14, 8192),
        (7, 8192),
        (3, 8192),
        (1, 8192),
        (0, 8192),
        (0, 4096),
        (0, 2048),
        (0, 1024),
        (0, 512),
    ]
    assert plan.notes[-1] == "out of memory at load, so context 512"  # one note, not a pile


def test_compute_estimate_follows_the_context_and_flash_attention() -> None:
    # llama.cpp reported these on CPU for the 0.6b shape (n_outputs_max 1): 30.0, 58.0
    # (flash attention) and 154.0, 1106.0 MiB (without) at 4,096 and 32,768 tokens.
    for ctx, fa, reported in [
        (4096, True, 30.0),
        (32768, True, 58.0),
        (4096, False, 154.0),
        (32768, False, 1106.0),
    ]:
        estimate = compute_bytes(QWEN3_06B, ctx, fa, 1) / MiB
        assert reported <= estimate <= reported * 1.05 + 2, (ctx, fa, estimate)
