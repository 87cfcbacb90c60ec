"""The model store's own rules: atomic commits, sweeping, names that cannot escape, checksums.
Resolving a model on real checkpoints: tests/live/test_store.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import InvalidModelError, NotFoundError, StoreError, UsageError
from edge.model.store import (
    MANIFEST,
    MODEL_FILE,
    Manifest,
    ModelStore,
    check_name,
    model_name,
    sha256_file,
)


def stage(store: ModelStore, name: str, payload: bytes, *, replace: bool = False) -> Path:
    with store.staging() as tmp:
        (tmp / MODEL_FILE).write_bytes(payload)
        entry = store.commit(tmp, Manifest(name, "Q8_0", "", 0, {"kind": "test"}), replace=replace)
    return entry.folder


def test_commit_writes_manifest_and_renames(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    folder = stage(store, "m-q8_0", b"GGUF-bytes")
    [entry] = store.entries()
    assert entry.folder == folder == tmp_path / "m-q8_0"
    assert entry.manifest.sha256 == sha256_file(folder / MODEL_FILE)
    assert entry.manifest.size == 10 and entry.manifest.created
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "m-q8_0"]  # staging removed
    store.verify(entry)


def test_commit_never_clobbers_without_replace(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stage(store, "m", b"first")
    with pytest.raises(StoreError, match="already exists"):
        stage(store, "m", b"second")
    assert (tmp_path / "m" / MODEL_FILE).read_bytes() == b"first"
    stage(store, "m", b"second", replace=True)
    assert (tmp_path / "m" / MODEL_FILE).read_bytes() == b"second"
    assert [e.name for e in store.entries()] == ["m"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".staging", ".trash"))]


def test_half_written_folders_are_not_models(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / "no-manifest").mkdir()
    (tmp_path / "no-manifest" / MODEL_FILE).write_bytes(b"x")
    (tmp_path / "bad-manifest").mkdir()
    (tmp_path / "bad-manifest" / MANIFEST).write_text("{not json")
    (tmp_path / ".staging-1-2").mkdir()
    assert store.entries() == []
    with pytest.raises(NotFoundError, match="No model named 'no-manifest'"):
        store.get("no-manifest")


def test_sweep_removes_only_dead_owners(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # that process has exited
    store = ModelStore(tmp_path)
    (tmp_path / f".staging-{dead_pid}-1").mkdir()
    (tmp_path / f".trash-m-{dead_pid}").mkdir()
    (tmp_path / f".staging-{os.getpid()}-5").mkdir()
    removed = {p.name for p in store.sweep()}
    assert removed == {f".staging-{dead_pid}-1", f".trash-m-{dead_pid}"}
    assert (tmp_path / f".staging-{os.getpid()}-5").is_dir()


@pytest.mark.parametrize(
    "bad", ["../x", "/etc/passwd", "a/b", "..", "", "Upper", ".hidden", "a" * 200, "x\0y"]
)
def test_names_cannot_escape_the_store(bad: str) -> None:
    with pytest.raises(UsageError, match="not a valid model name"):
        check_name(bad)


def test_model_names() -> None:
    assert model_name("Qwen/Qwen3-0.6B", "Q8_0") == "qwen3-0.6b-q8_0"
    assert model_name("Qwen/Qwen3-0.6B-GGUF", "Q4_K_M") == "qwen3-0.6b-q4_k_m"
    assert model_name("/some/path/My Model!", "F16") == "my-model-f16"
    assert check_name(model_name("Qwen/Qwen3-0.6B", "BF16"))


def test_verify_detects_corruption(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    folder = stage(store, "m", b"0123456789")
    (folder / MODEL_FILE).write_bytes(b"0123456780")  # same size, one byte flipped
    with pytest.raises(InvalidModelError, match="damaged"):
        store.verify(store.get("m"))


def test_remove(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stage(store, "m", b"x")
    assert store.remove("m").name == "m"
    assert store.entries() == [] and not (tmp_path / "m").exists()


def test_manifest_ignores_unknown_keys() -> None:
    text = Manifest("m", "Q8_0", "ab", 1, {"kind": "hub"}).to_json()
    assert Manifest.from_json(text.replace('"name"', '"future": 1, "name"')).name == "m"
