"""The names /api/pull pulls (edge/cli/puller.py): Ollama-style names → a Hugging Face repo
and quant, store names found as they are, and everything else left to the server's 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.puller import PullSource, make_puller, ollama_source
from edge.config import Settings
from edge.errors import UsageError
from edge.model.store import MANIFEST, Manifest


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("qwen3:0.6b", PullSource("Qwen/Qwen3-0.6B")),
        ("QWEN3:0.6B", PullSource("Qwen/Qwen3-0.6B")),
        ("qwen3:0.6b-q4_K_M", PullSource("Qwen/Qwen3-0.6B", "Q4_K_M")),
        ("qwen3:0.6b-q8_0", PullSource("Qwen/Qwen3-0.6B", "Q8_0")),
        ("qwen3:0.6b-fp16", PullSource("Qwen/Qwen3-0.6B", "F16")),
        ("qwen3:0.6b-bf16", PullSource("Qwen/Qwen3-0.6B", "BF16")),
        ("hf.co/Qwen/Qwen3-0.6B", PullSource("Qwen/Qwen3-0.6B")),
        ("hf.co/Qwen/Qwen3-0.6B:latest", PullSource("Qwen/Qwen3-0.6B")),
        ("hf.co/Qwen/Qwen3-0.6B:Q6_K", PullSource("Qwen/Qwen3-0.6B", "Q6_K")),
        ("HF.CO/me/My-Qwen3", PullSource("me/My-Qwen3")),  # the repo keeps its case
        ("huggingface.co/Qwen/Qwen3-0.6B:q4_k_m", PullSource("Qwen/Qwen3-0.6B", "Q4_K_M")),
        ("hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0", PullSource("Qwen/Qwen3-0.6B-GGUF", "Q8_0", True)),
        ("hf.co/unsloth/Qwen3-0.6B-gguf", PullSource("unsloth/Qwen3-0.6B-gguf", None, True)),
    ],
)
def test_names_that_map_to_a_repo_and_quant(name: str, source: PullSource) -> None:
    assert ollama_source(name) == source


@pytest.mark.parametrize(
    "name",
    [
        "llama3.2",
        "llama3.2:latest",
        "qwen3",  # Ollama's qwen3:latest is the 8B
        "qwen3:8b",
        "qwen3:0.6",
        "qwen3:0.6b-",
        "qwen2.5:0.5b",
        "hf.co/",
        "hf.co/Qwen",
        "hf.co/Qwen/Qwen3-0.6B/extra",
        "hf.co/../etc:Q8_0",
        "hf.co/Qwen/Qwen3-0.6B:",
        "hf.co/Qwen/Qwen3-0.6B:a:b",
        "",
    ],
)
def test_names_not_ours_map_to_nothing(name: str) -> None:
    assert ollama_source(name) is None


def stored(cfg: Settings, name: str) -> None:
    """A model folder the store lists (its manifest is all `find` reads)."""
    folder = cfg.models_dir / name
    folder.mkdir(parents=True)
    manifest = Manifest(name=name, quant="Q8_0", sha256="0" * 64, size=1)
    (folder / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")


def test_the_puller_finds_stored_names_and_plans_mapped_ones(tmp_path: Path) -> None:
    cfg = Settings(home=tmp_path)
    stored(cfg, "mine-q4_k_m")
    stored(cfg, "qwen3-0.6b-q8_0")
    puller = make_puller(cfg)
    for name in ("mine-q4_k_m", "mine-q4_k_m:latest", "qwen3:0.6b", "hf.co/Qwen/Qwen3-0.6B"):
        plan = puller(name)
        assert plan is not None and plan.stored, name
    plan = puller("hf.co/Qwen/Qwen3-0.6B:Q4_K_M")
    assert plan is not None and not plan.stored and plan.name == "qwen3-0.6b-q4_k_m"
    assert puller("llama3.2") is None and puller("Mine-Q4_K_M") is None
    with pytest.raises(UsageError):  # a tag that is no quant type: a 400 before anything runs
        puller("hf.co/Qwen/Qwen3-0.6B:Q9_Z")
