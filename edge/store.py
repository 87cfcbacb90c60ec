"""The local model store: one folder per model+quant, holding `model.gguf` and `manifest.json`.

A model is built in a hidden staging folder beside the others and renamed into place
only when its manifest (with the file's sha256) is written, so an interrupted pull, a
killed process or a full disk never leaves a half model under a real name. Staging
folders carry their creator's PID; stale ones are swept on the next write.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from edge.errors import InvalidModelError, NotFoundError, StoreError, UsageError

MODEL_FILE = "model.gguf"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_STAGING = ".staging-"


@dataclass
class Manifest:
    """What we know about a stored model; `sha256` is of `model.gguf`."""

    name: str
    quant: str
    sha256: str
    size: int
    source: dict[str, Any] = field(default_factory=dict)  # kind, repo, revision, commit, path
    created: str = ""
    file: str = MODEL_FILE

    def to_json(self) -> str:
        """Stable, human-readable JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; unknown keys from newer versions are ignored."""
        data = json.loads(text)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Entry:
    """A finished model in the store."""

    manifest: Manifest
    folder: Path

    @property
    def name(self) -> str:
        """The store name, e.g. `qwen3-0.6b-q8_0`."""
        return self.manifest.name

    @property
    def path(self) -> Path:
        """The GGUF file to load."""
        return self.folder / self.manifest.file


def model_name(base: str, quant: str) -> str:
    """Store name for a source and quant: `Qwen/Qwen3-0.6B` + `Q8_0` → `qwen3-0.6b-q8_0`."""
    stem = base.rstrip("/").rsplit("/", 1)[-1].lower()
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-.") or "model"
    stem = re.sub(r"-gguf$", "", stem)
    return f"{stem}-{quant.lower()}"


def check_name(name: str) -> str:
    """Reject names that could escape the store folder or are not ours."""
    if not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"'{name}' is not a valid model name.",
            "Names are lower-case letters, digits, '.', '_' and '-' (see `edge-qwen models`).",
        )
    return name


def sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ModelStore:
    """Finished models under `root`, each written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entries(self) -> list[Entry]:
        """Every finished model, sorted by name; half-written or foreign folders are skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            entry = self._read(folder)
            if entry is not None:
                found.append(entry)
        return found

    def _read(self, folder: Path) -> Entry | None:
        try:
            manifest = Manifest.from_json((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None
        entry = Entry(manifest, folder)
        return entry if entry.path.is_file() else None

    def find(self, name: str) -> Entry | None:
        """The entry called `name`, or None."""
        folder = self.root / check_name(name)
        return self._read(folder) if folder.is_dir() else None

    def get(self, name: str) -> Entry:
        """The entry called `name`, or a NotFoundError naming what there is."""
        entry = self.find(name)
        if entry is None:
            have = ", ".join(e.name for e in self.entries()) or "none yet"
            raise NotFoundError(
                f"No model named '{name}' in the store ({self.root}).",
                f"Models here: {have}. Get one with `edge-qwen pull`.",
            )
        return entry

    def remove(self, name: str) -> Entry:
        """Delete a model; its folder is renamed away first so a crash leaves no half model."""
        with self.lock():
            entry = self.get(name)
            trash = self.root / f".trash-{name}-{os.getpid()}"
            os.replace(entry.folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return entry

    def verify(self, entry: Entry) -> None:
        """Re-hash the GGUF and compare with the manifest."""
        if (
            entry.path.stat().st_size != entry.manifest.size
            or sha256_file(entry.path) != entry.manifest.sha256
        ):
            raise InvalidModelError(
                f"Model '{entry.name}' is damaged: its file does not match the checksum in its manifest.",
                f"Remove it with `edge-qwen rm {entry.name}` and pull it again.",
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize writers (two pulls at once) across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".lock")):
            yield

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh hidden folder to build a model in; removed afterwards whatever happens."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        folder = self.root / f"{_STAGING}{os.getpid()}-{time.time_ns()}"
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def commit(self, staging: Path, manifest: Manifest, *, replace: bool = False) -> Entry:
        """Hash the staged GGUF, write the manifest and rename the folder into place."""
        check_name(manifest.name)
        gguf = staging / MODEL_FILE
        manifest.file = MODEL_FILE
        manifest.size = gguf.stat().st_size
        manifest.sha256 = sha256_file(gguf)
        manifest.created = manifest.created or datetime.now(timezone.utc).isoformat(
            timespec="seconds"
        )
        _write_synced(staging / MANIFEST, manifest.to_json())
        _fsync_file(gguf)
        final = self.root / manifest.name
        with self.lock():
            if final.exists():
                if not replace:
                    raise StoreError(
                        f"A model named '{manifest.name}' already exists.",
                        f"Pass --force to replace it, or `edge-qwen rm {manifest.name}` first.",
                    )
                old = self.root / f".trash-{manifest.name}-{os.getpid()}"
                os.replace(final, old)
                os.replace(staging, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, final)
            _fsync_dir(self.root)
        return Entry(manifest, final)

    def sweep(self) -> list[Path]:
        """Delete staging and trash folders left by processes that no longer run."""
        removed = []
        for folder in self.root.glob(".*-*"):
            pid = _owner_pid(folder.name)
            if pid is not None and not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed


def _owner_pid(name: str) -> int | None:
    if name.startswith(_STAGING):
        head = name[len(_STAGING) :].split("-", 1)[0]
    elif name.startswith(".trash-"):
        head = name.rsplit("-", 1)[-1]
    else:
        return None
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "posix":
        _fsync_file(path)
