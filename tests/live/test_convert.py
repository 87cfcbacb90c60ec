"""The converter, checked against independent references: HF tokenizers and transformers."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from edge.errors import InvalidModelError, UsageError
from edge.model.convert import convert
from tests.support.cli import assert_clean_failure, run_cli
from tests.support.corpus import corpus
from tests.support.slow import slow_fixture

PROMPTS = [
    "Hello world, this is a test of the converter.",
    "你好，世界！今天天气很好。",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "😀 emoji 👨‍👩‍👧‍👦 and   whitespace\t\truns\n\n",
]


def field(reader: gguf.GGUFReader, key: str) -> object:
    f = reader.get_field(key)
    assert f is not None, key
    return f.contents()


@slow_fixture(scope="module")
def vocab_llm(gguf_of: Callable[[str, str], Path]):  # type: ignore[no-untyped-def]
    from llama_cpp import Llama

    llm = Llama(str(gguf_of("tiny", "BF16")), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def test_token_ids_equal_hf_tokenizers(vocab_llm, tiny_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    mismatches = []
    for text in corpus():
        ours = vocab_llm.tokenize(text.encode(), add_bos=False, special=True)
        theirs = ref.encode(text, add_special_tokens=False).ids
        if ours != theirs:
            mismatches.append((text, ours[:10], theirs[:10]))
    assert not mismatches, mismatches[:5]


def token_bytes(llm, token: int) -> bytes:  # type: ignore[no-untyped-def]
    """llama.cpp's piece for a token, with a buffer that fits the longest Qwen token.

    (llama-cpp-python's own `detokenize` uses a 32-byte buffer and silently returns
    nothing for longer tokens, such as Qwen's runs of 40 spaces.)
    """
    import ctypes

    import llama_cpp

    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, size, 0, True)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def test_detokenize_round_trips_corpus(vocab_llm) -> None:  # type: ignore[no-untyped-def]
    for text in corpus():
        tokens = vocab_llm.tokenize(text.encode(), add_bos=False, special=True)
        assert b"".join(token_bytes(vocab_llm, t) for t in tokens).decode() == text


def test_nfd_text_differs_only_by_normalization(vocab_llm, tiny_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """HF's Qwen2 tokenizer NFC-normalizes; llama.cpp does not. Known, and NFC text agrees."""
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    nfd = unicodedata.normalize("NFD", "café résumé 한국어")
    assert vocab_llm.tokenize(nfd.encode(), add_bos=False, special=True) != ref.encode(nfd).ids
    nfc = unicodedata.normalize("NFC", nfd)
    assert vocab_llm.tokenize(nfc.encode(), add_bos=False, special=True) == ref.encode(nfd).ids


def test_logits_match_transformers(gguf_of: Callable[[str, str], Path], tiny_dir: Path) -> None:
    import torch
    import transformers
    from llama_cpp import Llama

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32)
    # F32 KV cache: the default F16 cache would round keys/values and hide converter bugs less well.
    llm = Llama(
        str(gguf_of("tiny", "F32")),
        n_ctx=256,
        n_threads=2,
        logits_all=True,
        type_k=0,
        type_v=0,
        verbose=False,
    )
    worst = 0.0
    for prompt in PROMPTS:
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        ours = np.asarray(llm.scores[: len(tokens)])
        with torch.no_grad():
            theirs = hf(torch.tensor([tokens])).logits[0].numpy()
        assert ours.shape == theirs.shape
        assert (ours.argmax(-1) == theirs.argmax(-1)).all()
        worst = max(worst, float(np.abs(ours - theirs).max()))
    llm.close()
    assert worst <= 1e-3, worst


def test_metadata_is_what_llama_cpp_reads(
    gguf_of: Callable[[str, str], Path], tiny_dir: Path
) -> None:
    r = gguf.GGUFReader(gguf_of("tiny", "BF16"))
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert field(r, "general.architecture") == "qwen3"
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_BF16
    assert field(r, "qwen3.block_count") == cfg["num_hidden_layers"]
    assert field(r, "qwen3.embedding_length") == cfg["hidden_size"]
    assert field(r, "qwen3.attention.head_count_kv") == cfg["num_key_value_heads"]
    assert field(r, "qwen3.attention.key_length") == cfg["head_dim"]
    assert field(r, "qwen3.context_length") == 40960
    assert field(r, "qwen3.rope.freq_base") == pytest.approx(1e6)
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "qwen2"
    assert field(r, "tokenizer.ggml.add_bos_token") is False
    assert field(r, "tokenizer.ggml.eos_token_id") == 151645
    assert field(r, "tokenizer.ggml.padding_token_id") == 151643
    template = json.loads((tiny_dir / "tokenizer_config.json").read_text())["chat_template"]
    assert field(r, "tokenizer.chat_template") == template
    tokens, types = field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    assert len(tokens) == cfg["vocab_size"] == 151936
    assert (tokens[151667], types[151667]) == ("<think>", gguf.TokenType.USER_DEFINED)
    assert (tokens[151645], types[151645]) == ("<|im_end|>", gguf.TokenType.CONTROL)
    assert (tokens[151900], types[151900]) == ("[PAD151900]", gguf.TokenType.UNUSED)
    names = {t.name for t in r.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert {"token_embd.weight", "blk.1.attn_q_norm.weight", "blk.1.ffn_down.weight"} <= names


def test_bf16_output_is_bit_exact(gguf_of: Callable[[str, str], Path], tiny_dir: Path) -> None:
    from edge.model.safetensors_io import open_checkpoint

    refs = open_checkpoint(tiny_dir)
    tensors = {t.name: t for t in gguf.GGUFReader(gguf_of("tiny", "BF16")).tensors}
    emb = tensors["token_embd.weight"]
    assert emb.tensor_type == gguf.GGMLQuantizationType.BF16
    src = np.asarray(refs["model.embed_tokens.weight"].raw())
    assert np.array_equal(np.asarray(emb.data).view(np.uint16).reshape(src.shape), src)
    norm = tensors["blk.0.attn_norm.weight"]
    assert norm.tensor_type == gguf.GGMLQuantizationType.F32  # 1-D tensors stay F32


@pytest.mark.parametrize("outtype", ["f16", "f32"])
def test_outtypes_load_and_agree(outtype: str, gguf_of: Callable[[str, str], Path], greedy) -> None:  # type: ignore[no-untyped-def]
    reference = greedy(gguf_of("tiny", "BF16"), "Hello world", max_tokens=8)
    assert greedy(gguf_of("tiny", outtype), "Hello world", max_tokens=8) == reference


def test_scripted_model_follows_its_script(gguf_of: Callable[[str, str], Path], greedy) -> None:  # type: ignore[no-untyped-def]
    path = gguf_of("scripted", "BF16")
    thinking = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert greedy(path, thinking) == "<think>Let me think</think>\n\nHello world<|im_end|>"
    assert greedy(path, thinking + "<think>\n\n</think>\n\n") == "Hello world<|im_end|>"


# --- bad input ----------------------------------------------------------------------------


def test_rejects_non_qwen3_folder(tmp_path: Path, tiny_dir: Path) -> None:
    folder = tmp_path / "llama"
    shutil.copytree(tiny_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidModelError, match="'llama' model, not Qwen3"):
        convert(folder, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*partial"))


def test_rejects_truncated_safetensors(tmp_path: Path, tiny_dir: Path) -> None:
    folder = tmp_path / "cut"
    shutil.copytree(tiny_dir, folder)
    weights = folder / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(InvalidModelError, match="truncated"):
        convert(folder, tmp_path / "out.gguf")
    assert [p.name for p in tmp_path.iterdir()] == ["cut"]


def test_rejects_mismatched_shapes(tmp_path: Path, tiny_dir: Path) -> None:
    folder = tmp_path / "wrong"
    shutil.copytree(tiny_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 1024
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidModelError, match="mlp.gate_proj.weight has shape"):
        convert(folder, tmp_path / "out.gguf")


def test_never_overwrites_without_force(tmp_path: Path, tiny_dir: Path) -> None:
    out = tmp_path / "out.gguf"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        convert(tiny_dir, out)
    assert out.read_bytes() == b"precious"


def test_cli_convert_and_errors(tmp_path: Path, tiny_dir: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "t.gguf"
    proc = run_cli(["convert", str(tiny_dir), "-o", str(out), "--outtype", "F16"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert (
        gguf.GGUFReader(out).get_field("general.file_type").contents()
        == gguf.LlamaFileType.MOSTLY_F16
    )  # type: ignore[union-attr]
    assert_clean_failure(
        run_cli(["convert", str(tmp_path / "nope")], cli_env), 1, "config.json is missing"
    )
    assert_clean_failure(
        run_cli(["convert", str(tiny_dir), "--outtype", "q4"], cli_env), 2, "Unknown output type"
    )
    assert_clean_failure(
        run_cli(["convert", str(tiny_dir), "-o", str(out)], cli_env), 2, "already exists"
    )


def test_refuses_to_start_without_room(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import namedtuple

    from edge import fileio
    from edge.errors import DiskFullError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        fileio.shutil, "disk_usage", lambda _: usage(2**30, 2**30 - 2**20, 2**20)
    )  # 1 MiB free
    with pytest.raises(DiskFullError, match="Not enough disk space .* MiB needed, 1 MiB free"):
        convert(tiny_dir, tmp_path / "out.gguf")
    assert list(tmp_path.iterdir()) == []  # checked before anything was written
