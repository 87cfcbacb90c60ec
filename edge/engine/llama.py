"""llama.h access: the library, a model's vocabulary, a batch, and a model with its context
loaded from a plan (llama.cpp's load failures turned into clear errors).

llama-cpp-python is used at one level, its ctypes bindings of llama.h; this package is
the only one that imports it (edge.model.quantize aside). This file imports neither the
scheduler (`edge.engine.scheduler`) nor token choice (`edge.engine.sampling`): both
build on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.engine.plan import KV_TYPES, Plan
from edge.engine.text import CLOSE_THINK
from edge.errors import InvalidModelError, OutOfMemoryError, UsageError

_lib: Any = None


def _llama() -> Any:
    """llama-cpp-python's bindings of llama.h, imported on first use (the CLI's --help
    stays instant), with our log callback installed (edge.engine.llama_log)."""
    global _lib
    if _lib is None:
        import llama_cpp

        import edge.engine.llama_log  # noqa: F401  (installs the callback)

        _lib = llama_cpp
    return _lib


def llama_cpp_version() -> str:
    """The llama-cpp-python release in use."""
    return str(_llama().__version__)


class Vocab:
    """Text <-> tokens for a loaded model, with per-token lookups cached."""

    def __init__(self, model: Any) -> None:
        lib = _llama()
        self._lib = lib
        self.ptr = lib.llama_model_get_vocab(model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.ptr))
        self._pieces: dict[int, bytes] = {}
        self._shown: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self.think_open = self._single("<think>")
        self.think_close = self._single("</think>")
        self.close_think = self.tokenize(CLOSE_THINK)

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text`, special tokens parsed, NFC-normalized as HF's Qwen2 tokenizer does."""
        data = unicodedata.normalize("NFC", text).encode("utf-8")
        room = len(data) + 8
        while True:
            buf = (self._lib.llama_token * room)()
            n = self._lib.llama_tokenize(self.ptr, data, len(data), buf, room, False, True)
            if n >= 0:
                return list(buf[:n])
            if -n <= room:  # an error, not a short buffer
                raise UsageError("The text could not be tokenized.")
            room = -n

    def piece(self, token: int) -> bytes:
        """The bytes of one generated token (special tokens as empty)."""
        got = self._pieces.get(token)
        if got is None:
            got = self._pieces[token] = self.token_bytes(token)
        return got

    def shown(self, token: int) -> bytes:
        """The bytes of a token as a person reads it: special tokens spelled out."""
        got = self._shown.get(token)
        if got is None:
            got = self._shown[token] = self.token_bytes(token, special=True)
        return got

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (llama-cpp-python's detokenize drops tokens over 32 bytes)."""
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_token_to_piece(self.ptr, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def is_eog(self, token: int) -> bool:
        """End of generation (`<|im_end|>`, `<|endoftext|>`)."""
        got = self._eog.get(token)
        if got is None:
            got = self._eog[token] = bool(self._lib.llama_vocab_is_eog(self.ptr, token))
        return got

    def _single(self, text: str) -> int | None:
        ids = self.tokenize(text)
        return ids[0] if len(ids) == 1 else None


class _Batch:
    """A reusable llama_batch of up to `size` tokens, one sequence id each."""

    def __init__(self, size: int) -> None:
        self.raw = _llama().llama_batch_init(size, 0, 1)
        self.size = size
        self.n = 0

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0

    def add_all(
        self, tokens: list[int], pos: int, seq: int, logits_last: bool, every: bool = False
    ) -> None:
        """Add one sequence's tokens; logits for the last one (`logits_last`), or for each
        (`every`)."""
        raw, i = self.raw, self.n
        token, position, n_seq, seq_id, logits = (
            raw.token,
            raw.pos,
            raw.n_seq_id,
            raw.seq_id,
            raw.logits,
        )
        last = len(tokens) - 1
        for k, t in enumerate(tokens):
            token[i] = t
            position[i] = pos + k
            n_seq[i] = 1
            seq_id[i][0] = seq
            logits[i] = every or (logits_last and k == last)
            i += 1
        self.n = i
        raw.n_tokens = i


def _bytes_ptr(data: Any) -> Any:
    """A `uint8_t *` to a numpy byte array, for llama.h's state calls."""
    return data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def _load(path: Path, plan: Plan) -> tuple[Any, Any]:
    """The model and a context with one sequence id per slot and a unified KV cache."""
    lib = _llama()
    mp = lib.llama_model_default_params()
    mp.n_gpu_layers = plan.n_gpu_layers
    # ctypes accepts any attribute name silently, so only fields of this release are set.
    mp.load_mode = {
        (False, False): lib.LLAMA_LOAD_MODE_NONE,
        (True, False): lib.LLAMA_LOAD_MODE_MMAP,
        (False, True): lib.LLAMA_LOAD_MODE_MLOCK,
        (True, True): lib.LLAMA_LOAD_MODE_MMAP_MLOCK,
    }[(plan.use_mmap, plan.use_mlock)]
    cp = lib.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = plan.n_ctx, plan.n_batch, plan.n_batch
    cp.n_seq_max, cp.kv_unified = plan.n_parallel, True
    cp.n_outputs_max = plan.n_outputs_max  # logits of one token per sequence, not n_batch
    cp.n_threads, cp.n_threads_batch = plan.n_threads, plan.n_threads_batch
    cp.flash_attn_type = 1 if plan.flash_attn else 0
    cp.type_k = cp.type_v = KV_TYPES[plan.kv_type][0]
    cp.no_perf = True
    with loading(path):
        lib.llama_backend_init()
        model = lib.llama_model_load_from_file(str(path).encode("utf-8"), mp)
        if not model:
            raise ValueError("the model could not be loaded")
        ctx = lib.llama_init_from_model(model, cp)
        if not ctx:
            lib.llama_model_free(model)
            raise ValueError("the context could not be created")
        return model, ctx


@contextlib.contextmanager
def loading(path: Path) -> Iterator[None]:
    """llama.cpp's load failures as one error quoting llama.cpp's own reason: an
    OutOfMemoryError when a buffer could not be allocated, else an InvalidModelError."""
    from edge.engine.llama_log import captured_llama_log, last_error

    with captured_llama_log() as lines:
        try:
            yield
        except (ValueError, RuntimeError) as exc:
            short = next((line.strip() for line in lines if _OUT_OF_MEMORY.search(line)), None)
            if short:
                raise OutOfMemoryError(
                    f"llama.cpp ran out of memory loading {path.name}: {short}",
                    "Close programs that use the GPU or RAM, or ask for less: --ctx, --gpu-layers.",
                ) from None
            raise InvalidModelError(
                f"llama.cpp could not load {path}: {last_error(lines) or exc}",
                "The file may be damaged: `edge-qwen models --verify`, then re-pull it.",
            ) from None


# llama.cpp's words for a failed allocation: of a CPU or CUDA buffer, the KV cache, a
# cudaMalloc, a model buffer ("unable to allocate CUDA0 buffer").
_OUT_OF_MEMORY = re.compile(r"(failed|unable) to allocate|out of memory|cudaMalloc failed", re.I)
