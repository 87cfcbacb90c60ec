"""Quantization through llama.cpp's own quantizer: every output loads, generates, and has
the right size. The types offered: tests/unit/test_quantize.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from edge.errors import InvalidModelError, UsageError
from edge.model.quantize import quant_type, quantize
from tests.support.cli import assert_clean_failure, run_cli

# Bits per weight of the per-layer matrices. Pure types hit the nominal figure exactly;
# the _M mixes keep some attn_v/ffn_down rows at Q6_K, so they sit a little above.
BLOCK_BPW = {
    "Q4_0": (4.5, 4.5),
    "Q4_K_M": (4.5, 5.2),
    "Q5_K_M": (5.5, 6.0),
    "Q6_K": (6.5625, 6.5625),
    "Q8_0": (8.5, 8.5),
    "F16": (16.0, 16.0),
    "BF16": (16.0, 16.0),
}
METADATA_MAX = 8 * 2**20  # vocab (151,936 tokens + merges) and chat template


def matrix_bpw(path: Path) -> float:
    """Bits per weight over the blk.* matrices of a GGUF, from its tensor table."""
    reader = gguf.GGUFReader(path)
    elems = nbytes = 0
    for t in reader.tensors:
        if t.name.startswith("blk.") and len(t.shape) == 2:
            elems += int(np.prod(t.shape))
            nbytes += int(t.n_bytes)
    return 8 * nbytes / elems


@pytest.mark.parametrize("qtype", list(BLOCK_BPW))
def test_each_type_loads_generates_and_has_its_size(
    qtype: str, gguf_of: Callable[[str, str], Path], greedy: Callable[..., str]
) -> None:
    path = gguf_of("tiny", qtype) if qtype not in ("F16", "BF16") else _from_f32(gguf_of, qtype)
    lo, hi = BLOCK_BPW[qtype]
    assert lo - 1e-9 <= matrix_bpw(path) <= hi + 1e-9
    reader = gguf.GGUFReader(path)
    assert reader.get_field("general.file_type").contents() == quant_type(qtype).ftype  # type: ignore[union-attr]
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    assert 0 < path.stat().st_size - tensor_bytes < METADATA_MAX
    assert len(greedy(path, "Hello world", max_tokens=4)) > 0


def _from_f32(gguf_of: Callable[[str, str], Path], qtype: str) -> Path:
    src = gguf_of("tiny", "F32")
    out = src.with_name(f"tiny-from-f32-{qtype}.gguf")
    if not out.exists():
        quantize(src, out, qtype)
    return out


@pytest.mark.parametrize("qtype", ["BF16", "Q8_0", "Q4_K_M"])
def test_scripted_model_survives_quantization(
    qtype: str, gguf_of: Callable[[str, str], Path], greedy: Callable[..., str]
) -> None:
    path = gguf_of("scripted", qtype)
    prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert greedy(path, prompt) == "<think>Let me think</think>\n\nHello world<|im_end|>"
    assert greedy(path, prompt + "<think>\n\n</think>\n\n") == "Hello world<|im_end|>"


def _logits(path: Path, prompts: list[str]) -> list[np.ndarray]:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    out = []
    for prompt in prompts:
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        out.append(np.array(llm.scores[: len(tokens)]))
    llm.close()
    return out


def test_q8_0_logits_stay_close_to_f16(gguf_of: Callable[[str, str], Path]) -> None:
    prompts = ["Hello world, how are you today?", "你好，世界！", "def f(x):\n    return x * 2\n"]
    f16 = _logits(_from_f32(gguf_of, "F16"), prompts)
    q8 = _logits(gguf_of("tiny", "Q8_0"), prompts)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(f16, q8, strict=True))
    scale = max(float(np.abs(a).max()) for a in f16)
    # Measured on this checkpoint: 0.034 absolute on logits of magnitude up to 1.87 (1.8%).
    assert worst < 0.05 * scale, (worst, scale)


def test_requantize_needs_consent(tmp_path: Path, gguf_of: Callable[[str, str], Path]) -> None:
    q8 = gguf_of("tiny", "Q8_0")
    with pytest.raises(UsageError, match="already quantized"):
        quantize(q8, tmp_path / "q4.gguf", "Q4_K_M")
    assert not (tmp_path / "q4.gguf").exists()
    out = quantize(q8, tmp_path / "q4.gguf", "Q4_K_M", allow_requantize=True)
    assert gguf.GGUFReader(out).get_field("general.file_type").contents() == 15  # type: ignore[union-attr]


def test_bad_inputs(tmp_path: Path, gguf_of: Callable[[str, str], Path]) -> None:
    with pytest.raises(UsageError, match="Unknown quantization type 'Q9_X'"):
        quant_type("Q9_X")
    assert quant_type("q4_k_m").name == "Q4_K_M"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(InvalidModelError, match="not a readable GGUF"):
        quantize(junk, tmp_path / "out.gguf", "Q8_0")
    assert [p.name for p in tmp_path.iterdir()] == ["junk.gguf"]


def test_cli_quantize(
    tmp_path: Path, gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    src = tmp_path / "Qwen3-tiny-bf16.gguf"
    src.symlink_to(gguf_of("tiny", "BF16"))
    proc = run_cli(["quantize", str(src), "--type", "q8_0"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "Qwen3-tiny-Q8_0.gguf")
    assert_clean_failure(
        run_cli(["quantize", str(src), "-t", "Q2_XS"], cli_env), 2, "Unknown quantization type"
    )
    again = run_cli(["quantize", str(tmp_path / "Qwen3-tiny-Q8_0.gguf"), "-t", "Q4_0"], cli_env)
    assert_clean_failure(again, 2, "already quantized", "--allow-requantize")
