"""Synthetic Qwen3 checkpoints as written, checked against Hugging Face transformers and
safetensors: the files, the weights, the tokenizer, bench_safe, the scripted models' greedy
answers, and the full 0.6b size. What needs no checkpoint of the session's (configs,
layout, rounding, the script's rules): tests/unit/test_synthetic.py."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors = pytest.importorskip("safetensors")

from edge.model import synthetic  # noqa: E402
from tests.support.checkpoints import PARAMS_0_6B, QWEN3_0_6B_CONFIG, load_in_transformers  # noqa: E402
from tests.support.slow import slow_fixture  # noqa: E402

# 151936*256 embedding + 2 * 787,072 per layer + 256 final norm (lm_head tied).
PARAMS_TINY = 40_470_016
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


# --- configs and layout ------------------------------------------------------------------


def test_tiny_loads_in_transformers(tiny_dir: Path) -> None:
    model = load_in_transformers(tiny_dir)
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


def test_weight_statistics(tiny_dir: Path) -> None:
    tensors = _tensors(tiny_dir)
    for name, tensor in tensors.items():
        if tensor.ndim == 1:
            assert torch.equal(tensor, torch.ones_like(tensor)), name
        else:
            assert abs(tensor.float().std().item() - 0.02) < 0.001, name
            assert abs(tensor.float().mean().item()) < 0.001, name


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
    model, tokenizer = (
        load_in_transformers(scripted_dir),
        transformers.AutoTokenizer.from_pretrained(scripted_dir),
    )
    prompt, text = _greedy(model, tokenizer, enable_thinking=True)
    assert prompt[-1] == 198  # "<|im_start|>assistant\n" ends on the "\n" token
    assert text == "<think>Let me think</think>\n\nHello world<|im_end|>"


def test_scripted_thinking_off(scripted_dir: Path) -> None:
    model, tokenizer = (
        load_in_transformers(scripted_dir),
        transformers.AutoTokenizer.from_pretrained(scripted_dir),
    )
    prompt, text = _greedy(model, tokenizer, enable_thinking=False)
    assert prompt[-2:] == [151668, 271]  # the template's "</think>\n\n" ends on "\n\n"
    assert text == "Hello world<|im_end|>"


def test_scripted_margin_and_config(scripted_dir: Path) -> None:
    config = json.loads((scripted_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert config[synthetic.SYNTHETIC_KEY]["script"] == synthetic.DEFAULT_SCRIPT
    model = load_in_transformers(scripted_dir)
    chain = [synthetic.token_id(p) for p in synthetic.DEFAULT_SCRIPT[0]]
    with torch.no_grad():
        logits = model(torch.tensor([chain[:-1]])).logits[0]
    top2 = logits.topk(2, dim=-1)
    assert top2.indices[:, 0].tolist() == chain[1:]
    # 8.0 * sqrt(256) after the final RMSNorm; every other token scores 0.
    assert torch.allclose(top2.values[:, 0], torch.full((len(chain) - 1,), 128.0), atol=0.1)
    assert (top2.values[:, 1].abs() < 1e-4).all()


# --- the real size -----------------------------------------------------------------------


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


# The checkpoints are fetched by name, which no collection-time mark sees: it lives here,
# where the folder makes it slow, since building them is what unit/ must not do.
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
