"""The puller `edge-qwen serve` gives the server for Ollama's /api/pull: which Ollama-style
names mean which Hugging Face repo and quant (`ollama_source`, a pure table), and the
pull itself through the model pipeline, which the server may not import (`make_puller`).

Names, as Ollama's clients send them:

- a store name (`edge-qwen models`), with or without `:latest`: already here;
- Ollama's library name for Qwen3-0.6B, `qwen3:0.6b`, with a quant tag or not
  (`qwen3:0.6b-q4_K_M`, `qwen3:0.6b-fp16`): `Qwen/Qwen3-0.6B`, converted and quantized;
- Ollama's syntax for a Hugging Face repo, `hf.co/OWNER/REPO[:QUANT]` (or
  `huggingface.co/…`): that repo; a `…-GGUF` repo's ready file, else its safetensors
  converted;
- anything else (another family, another size): not ours, so the server's 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.server.ollama.request import ALIASES  # Ollama's library names for our model

if TYPE_CHECKING:
    from edge.config import Settings
    from edge.server.pulls import Progress, Puller, PullPlan

QWEN3_REPO = "Qwen/Qwen3-0.6B"
HUB_HOSTS = ("hf.co/", "huggingface.co/")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Ollama's tags for the unquantized types; the others are llama.cpp's names in any case.
_OLLAMA_TYPES = {"fp16": "F16", "fp32": "F32", "bf16": "BF16"}


@dataclass(frozen=True)
class PullSource:
    """What a name asks the pipeline for; `quant` None means the settings' default."""

    repo: str
    quant: str | None = None
    gguf: bool = False


def ollama_source(name: str) -> PullSource | None:
    """The repo and quant an Ollama-style model name means, or None for a name not ours."""
    text = name.strip()
    lower = text.lower()
    for host in HUB_HOSTS:
        if lower.startswith(host):
            repo, colon, tag = text[len(host) :].partition(":")
            if not _REPO.fullmatch(repo) or (colon and not _TAG.fullmatch(tag)):
                return None
            quant = None if tag.lower() in ("", "latest") else _quant(tag)
            return PullSource(repo, quant, gguf=repo.lower().endswith("-gguf"))
    for library in ALIASES:
        if lower == library:
            return PullSource(QWEN3_REPO)
        if lower.startswith(library + "-") and _TAG.fullmatch(tag := lower[len(library) + 1 :]):
            return PullSource(QWEN3_REPO, _quant(tag))
    return None


def _quant(tag: str) -> str:
    return _OLLAMA_TYPES.get(tag.lower(), tag.upper())


def store_name(name: str) -> str:
    """A name as the store would call it: Ollama's clients add `:latest` to bare names."""
    return name.strip().removesuffix(":latest")


def make_puller(cfg: Settings, say: Callable[[str], None] | None = None) -> Puller:
    """The server's puller: a store name or a mapped name already stored → nothing to do;
    a mapped name → the model pipeline (download, convert, quantize, store) in `cfg`'s
    store, its steps also told to `say` (the server's terminal); else None."""
    from edge.errors import UsageError
    from edge.model.store import ModelStore, model_name
    from edge.server.pulls import PullPlan, PullStep

    store = ModelStore(cfg.models_dir)

    def nothing(_: Progress) -> None:
        pass

    def puller(name: str) -> PullPlan | None:
        from edge.model.quantize import quant_type

        try:
            if store.find(store_name(name)) is not None:
                return PullPlan(store_name(name), True, nothing)
        except UsageError:  # not a store name at all (`hf.co/…`, upper case)
            pass
        source = ollama_source(name)
        if source is None:
            return None
        quant = quant_type(source.quant or cfg.quant).name  # a bad tag: a 400, before anything
        target = model_name(source.repo, quant)
        if store.find(target) is not None:
            return PullPlan(target, True, nothing)
        return PullPlan(target, False, lambda progress: run(source, quant, progress))

    def run(source: PullSource, quant: str, progress: Progress) -> None:
        from edge.model.pipeline import PullOptions, pull

        def report(message: str) -> None:
            progress(PullStep(message[:1].lower() + message[1:]))
            if say is not None:
                say(f"/api/pull: {message}")

        opts = PullOptions(source.repo, quant, gguf=source.gguf)
        pull(
            opts,
            cfg,
            report=report,
            progress=lambda done, total: progress(PullStep("converting to GGUF", done, total)),
        )

    return puller
