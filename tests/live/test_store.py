"""`ensure_model` resolves every form a model is named in (none, a GGUF path, an HF folder
converted once, a store name) on real checkpoints. The store's own rules, without a
model: tests/unit/test_store.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import Settings
from edge.errors import NotFoundError
from edge.model.pipeline import ensure_model


def test_ensure_model_resolves_every_form(
    tmp_path: Path, gguf_of: Callable[[str, str], Path], scripted_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(NotFoundError, match="No model pulled yet"):
        ensure_model(None, settings)
    direct = gguf_of("scripted", "Q8_0")
    assert ensure_model(str(direct), settings) == direct
    with pytest.raises(NotFoundError, match="does not exist"):
        ensure_model(str(tmp_path / "missing.gguf"), settings)
    imported = ensure_model(str(scripted_dir), settings)  # an HF folder is converted once
    assert imported.parent.name == "qwen3-scripted-q8_0"
    assert ensure_model("qwen3-scripted-q8_0", settings) == imported
    assert ensure_model(str(scripted_dir), settings) == imported  # unchanged: not rebuilt
    with pytest.raises(NotFoundError, match="qwen3-scripted-q8_0"):
        ensure_model("qwen3-0.6b-q8_0", settings)
