"""Qwen3 Hugging Face checkpoint (safetensors) → GGUF, written the way llama.cpp reads it.

Streams one tensor (in row chunks) at a time, so peak memory stays far below the model
size, and writes to a temporary name renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import gguf
import numpy as np

from edge.errors import InvalidModelError, UsageError
from edge.fileio import atomic_output, ensure_free_space
from edge.model.safetensors_io import (
    TensorRef,
    as_float32,
    f32_to_bf16_bits,
    iter_row_chunks,
    open_checkpoint,
)
from edge.model.vocab import Vocab, load_vocab

OUTTYPES = ("f32", "f16", "bf16")
_FILE_TYPE = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
}
_GGML_TYPE = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "bf16": gguf.GGMLQuantizationType.BF16,
}
# numpy dtype of the encoded data (BF16 travels as its uint16 bit pattern).
_NP_DTYPE: dict[str, np.dtype[Any]] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(np.uint16),
}
_ITEMSIZE = {k: v.itemsize for k, v in _NP_DTYPE.items()}
_CHUNK_BYTES = 32 * 1024 * 1024
_REQUIRED = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "rms_norm_eps",
)

# HF per-layer tensor suffix → llama.cpp's per-block name.
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Qwen3Config:
    """The hyper-parameters a Qwen3 GGUF needs, checked for consistency."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab_size: int
    context: int
    rope_theta: float
    rms_eps: float
    tied: bool
    bos_token_id: int | None

    @classmethod
    def from_folder(cls, folder: Path) -> Qwen3Config:
        """Read config.json and reject anything that is not a Qwen3 causal LM."""
        path = folder / "config.json"
        if not path.is_file():
            raise InvalidModelError(
                f"{folder} is not a Hugging Face model folder: config.json is missing.",
                "Point at a folder holding config.json, *.safetensors and tokenizer.json.",
            )
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidModelError(f"{path} is not valid JSON ({exc}).") from None
        archs = cfg.get("architectures") or []
        if cfg.get("model_type") != "qwen3" and "Qwen3ForCausalLM" not in archs:
            found = cfg.get("model_type") or ", ".join(archs) or "unknown"
            raise InvalidModelError(
                f"{folder} holds a '{found}' model, not Qwen3.",
                "edge-qwen converts Qwen3 dense checkpoints (model_type 'qwen3') only.",
            )
        missing = [k for k in _REQUIRED if not isinstance(cfg.get(k), (int, float))]
        if missing:
            raise InvalidModelError(f"{path} lacks {', '.join(missing)}.")
        if cfg.get("rope_scaling"):
            raise InvalidModelError(
                f"{path} uses rope_scaling, which this converter does not support yet."
            )
        heads = int(cfg["num_attention_heads"])
        return cls(
            hidden=int(cfg["hidden_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(cfg["num_key_value_heads"]),
            head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
            intermediate=int(cfg["intermediate_size"]),
            vocab_size=int(cfg["vocab_size"]),
            context=int(cfg.get("max_position_embeddings", 40960)),
            rope_theta=float(cfg.get("rope_theta", 1_000_000.0)),
            rms_eps=float(cfg["rms_norm_eps"]),
            tied=bool(cfg.get("tie_word_embeddings", False)),
            bos_token_id=cfg.get("bos_token_id"),
        )

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """HF tensor name → shape, for every tensor the checkpoint must hold."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = {
            "input_layernorm.weight": (self.hidden,),
            "self_attn.q_proj.weight": (q, self.hidden),
            "self_attn.k_proj.weight": (kv, self.hidden),
            "self_attn.v_proj.weight": (kv, self.hidden),
            "self_attn.o_proj.weight": (self.hidden, q),
            "self_attn.q_norm.weight": (self.head_dim,),
            "self_attn.k_norm.weight": (self.head_dim,),
            "post_attention_layernorm.weight": (self.hidden,),
            "mlp.gate_proj.weight": (self.intermediate, self.hidden),
            "mlp.up_proj.weight": (self.intermediate, self.hidden),
            "mlp.down_proj.weight": (self.hidden, self.intermediate),
        }
        shapes: dict[str, tuple[int, ...]] = {
            "model.embed_tokens.weight": (self.vocab_size, self.hidden)
        }
        for i in range(self.layers):
            shapes.update({f"model.layers.{i}.{k}": v for k, v in per_layer.items()})
        shapes["model.norm.weight"] = (self.hidden,)
        if not self.tied:
            shapes["lm_head.weight"] = (self.vocab_size, self.hidden)
        return shapes


def gguf_name(hf_name: str) -> str:
    """Map one HF Qwen3 tensor name to llama.cpp's name."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, idx, rest = hf_name.split(".", 3)
    return f"blk.{idx}.{_LAYER_NAMES[rest]}"


def plan_tensors(cfg: Qwen3Config, refs: dict[str, TensorRef], folder: Path) -> list[TensorRef]:
    """Check the checkpoint against the config; return tensors in writing order."""
    expected = cfg.expected_shapes()
    if cfg.tied:
        refs = {k: v for k, v in refs.items() if k != "lm_head.weight"}  # a redundant copy
    missing = [k for k in expected if k not in refs]
    extra = [k for k in refs if k not in expected]
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise InvalidModelError(
            f"{folder} does not hold a Qwen3 checkpoint matching its config.json ({what}).",
            "Check that the download finished and the config belongs to these weights.",
        )
    for name, shape in expected.items():
        if refs[name].shape != shape:
            raise InvalidModelError(
                f"{folder}: tensor {name} has shape {refs[name].shape}, config implies {shape}."
            )
    return [refs[name] for name in expected]


def _out_kind(ref: TensorRef, outtype: str) -> str:
    """Norms and other 1-D tensors stay F32, as llama.cpp expects and its kernels prefer."""
    return "f32" if len(ref.shape) < 2 else outtype


def _encode_chunk(raw: np.ndarray, src_dtype: str, kind: str) -> np.ndarray:
    if kind == "bf16" and src_dtype == "BF16":
        return np.ascontiguousarray(raw)  # already the exact bits: lossless copy
    x = as_float32(raw, src_dtype)
    if kind == "bf16":
        return f32_to_bf16_bits(x)
    return np.ascontiguousarray(x.astype(np.float16 if kind == "f16" else np.float32))


def source_outtype(refs: dict[str, TensorRef]) -> str:
    """The lossless GGUF type for this checkpoint: its own dtype (bf16, f16 or f32)."""
    dtypes = {r.dtype for r in refs.values() if len(r.shape) >= 2}
    return {"BF16": "bf16", "F16": "f16"}.get(dtypes.pop(), "f32") if len(dtypes) == 1 else "f32"


def write_metadata(
    w: gguf.GGUFWriter, cfg: Qwen3Config, vocab: Vocab, name: str, outtype: str
) -> None:
    """Hyper-parameters and tokenizer, keyed as llama.cpp's qwen3 loader reads them."""
    w.add_name(name)
    w.add_type("model")
    w.add_file_type(int(_FILE_TYPE[outtype]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg.context)
    w.add_embedding_length(cfg.hidden)
    w.add_block_count(cfg.layers)
    w.add_feed_forward_length(cfg.intermediate)
    w.add_head_count(cfg.heads)
    w.add_head_count_kv(cfg.kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    for setter, token_id in (
        (w.add_bos_token_id, vocab.bos_id),
        (w.add_eos_token_id, vocab.eos_id),
        (w.add_pad_token_id, vocab.pad_id),
    ):
        if token_id is not None:
            setter(token_id)
    w.add_add_bos_token(vocab.add_bos)
    if vocab.chat_template:
        w.add_chat_template(vocab.chat_template)


def convert(
    folder: Path,
    out: Path,
    *,
    outtype: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Convert a Qwen3 HF folder to a GGUF file at `out`; returns `out`.

    `outtype` None keeps the checkpoint's own precision (lossless). The file appears
    under its final name only once complete.
    """
    folder, out = Path(folder), Path(out)
    if outtype is not None and outtype not in OUTTYPES:
        raise UsageError(
            f"Unknown output type '{outtype}'.", f"Choose one of: {', '.join(OUTTYPES)}."
        )
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists.", "Choose another -o path or pass --force.")
    cfg = Qwen3Config.from_folder(folder)
    refs = open_checkpoint(folder)
    ordered = plan_tensors(cfg, refs, folder)
    vocab = load_vocab(folder, cfg.vocab_size, cfg.bos_token_id)
    outtype = outtype or source_outtype(refs)
    kinds = [_out_kind(r, outtype) for r in ordered]
    total = sum(int(np.prod(r.shape)) * _ITEMSIZE[k] for r, k in zip(ordered, kinds, strict=True))
    ensure_free_space(out.parent, total + 64 * 1024 * 1024)
    with atomic_output(out) as tmp:
        _write(tmp, cfg, vocab, name or folder.name, outtype, ordered, kinds, progress, total)
    return out


def _write(
    tmp: Path,
    cfg: Qwen3Config,
    vocab: Vocab,
    name: str,
    outtype: str,
    ordered: list[TensorRef],
    kinds: list[str],
    progress: Progress | None,
    total: int,
) -> None:
    w = gguf.GGUFWriter(tmp, arch="qwen3")
    write_metadata(w, cfg, vocab, name, outtype)
    for ref, kind in zip(ordered, kinds, strict=True):
        nbytes = int(np.prod(ref.shape)) * _ITEMSIZE[kind]
        w.add_tensor_info(
            gguf_name(ref.name), ref.shape, _NP_DTYPE[kind], nbytes, raw_dtype=_GGML_TYPE[kind]
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout: IO[bytes] = w.fout[0]
    done = 0
    for ref, kind in zip(ordered, kinds, strict=True):
        _pad(fout, w.data_alignment)
        written = 0
        for chunk in iter_row_chunks(ref, _CHUNK_BYTES):
            data = _encode_chunk(chunk, ref.dtype, kind)
            fout.write(data.data)  # not ndarray.tofile: its short-write error has no errno
            written += data.nbytes
        _pad(fout, w.data_alignment)
        done += written
        if progress:
            progress(done, total)
    fout.flush()
    os.fsync(fout.fileno())
    w.close()


def _pad(f: IO[Any], align: int) -> None:
    pos = f.tell()
    f.write(b"\0" * ((-pos) % align))
