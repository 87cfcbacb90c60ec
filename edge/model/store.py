"""The local model store: one folder per model+quant, holding `model.gguf` and `manifest.json`.

A model is built in a hidden staging folder beside the others and renamed into place
only when its manifest (with the file's sha256) is written, so an interrupted pull, a
killed process or a full disk never leaves a half model under a real name. Staging
folders carry their creator's PID; stale ones are swept on the next write.

A model that is damaged later (a truncated copy, flipped bytes) is caught when it is
opened: see `ModelStore.ensure_intact`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
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
from edge.fileio import disk_error, pid_alive

MODEL_FILE = "model.gguf"
MANIFEST = "manifest.json"
# Inside a model folder: the file identity (size, inode, mtime, ctime) at the last full
# sha256 check that passed, so opening an unchanged model does not re-read it.
STAMP = ".verified.json"
_RACY_NS = 100_000_000  # far above the file-time clock's tick (1–10 ms on Linux)
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
    # fullmatch: `$` in re.match also matches before a trailing newline ("m\n" passed).
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
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
            if not _NAME.fullmatch(folder.name) or ".." in folder.name or not folder.is_dir():
                continue  # hidden (staging, trash) or a name no command could address
            entry = self._read(folder)
            if entry is not None:
                found.append(entry)
        return found

    def _read(self, folder: Path) -> Entry | None:
        try:
            manifest = Manifest.from_json((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None
        if manifest.file != MODEL_FILE:
            return None  # a hand-edited `file` ("../x.gguf") must not point outside the folder
        manifest.name = folder.name  # the folder, which passed check_name, is the name
        # A committed folder always had its file: one that lost it is a damaged model
        # (listed, refused by `ensure_intact`, removable by `rm`), not a half-written one.
        return Entry(manifest, folder)

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
        """Re-hash the GGUF and compare with the manifest (always reads the whole file)."""
        st = self._stat_checked(entry)
        if sha256_file(entry.path) != entry.manifest.sha256:
            raise damaged(entry, "its contents do not match the sha256 in its manifest")
        _write_stamp(entry, st)

    def ensure_intact(self, entry: Entry) -> Entry:
        """Check a model before it is loaded; raise InvalidModelError if it is damaged.

        A wrong size (a truncated or overwritten copy) is caught at once from `stat`. The
        full sha256 (about 1 s per GB) is computed only when the file's identity — size,
        inode, mtime and ctime — differs from the one recorded at the last check that
        passed (at commit, by `models --verify`, or by an earlier load), so a normal start
        stays instant while any write to the file, even one that restores the mtime
        (ctime cannot be set back), forces a re-hash. Silent media corruption that leaves
        the metadata unchanged is what `edge-qwen models --verify` is for.
        """
        st = self._stat_checked(entry)
        if _read_stamp(entry) == _identity(st, entry.manifest.sha256):
            return entry
        self.verify(entry)
        return entry

    def _stat_checked(self, entry: Entry) -> os.stat_result:
        try:
            st = entry.path.stat()
        except OSError:
            raise damaged(entry, "its model.gguf is missing") from None
        if st.st_size != entry.manifest.size:
            raise damaged(
                entry, f"model.gguf is {st.st_size} bytes, its manifest says {entry.manifest.size}"
            )
        return st

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
        st = gguf.stat()  # before hashing: a write during the hash then shows as a change
        manifest.size = st.st_size
        manifest.sha256 = sha256_file(gguf)
        manifest.created = manifest.created or datetime.now(timezone.utc).isoformat(
            timespec="seconds"
        )
        try:
            _write_synced(staging / MANIFEST, manifest.to_json())
            _fsync_file(gguf)
        except OSError as exc:  # a disk that fills up on the last few bytes
            raise disk_error(exc, staging / MANIFEST) from None
        _write_stamp(Entry(manifest, staging), st)  # renaming the folder keeps it valid
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
        """Delete staging and trash folders left by processes that no longer run.

        A replace (`commit`) or `rm` killed between its two renames leaves the old model in
        its trash folder with no model under its name: that model is put back instead, so
        an interrupted command changes nothing rather than losing a working model.
        """
        removed = []
        with self.lock():
            for folder in self.root.glob(".*-*"):
                pid = _owner_pid(folder.name)
                if pid is None or pid_alive(pid):
                    continue
                if not self._restore(folder):
                    shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed

    def _restore(self, trash: Path) -> bool:
        if not trash.name.startswith(".trash-"):
            return False
        name = trash.name[len(".trash-") :].rsplit("-", 1)[0]
        entry = self._read(trash) if _NAME.fullmatch(name) else None
        if entry is None or (self.root / name).exists():
            return False
        try:  # an `rm` killed while deleting leaves a partial trash: never put that back
            whole = entry.path.stat().st_size == entry.manifest.size
        except OSError:
            whole = False
        if whole:
            os.replace(trash, self.root / name)
        return whole


def _owner_pid(name: str) -> int | None:
    if name.startswith(_STAGING):
        head = name[len(_STAGING) :].split("-", 1)[0]
    elif name.startswith(".trash-"):
        head = name.rsplit("-", 1)[-1]
    else:
        return None
    return int(head) if head.isdigit() else None


def damaged(entry: Entry, why: str) -> InvalidModelError:
    """The error for a stored model whose file no longer matches its manifest."""
    return InvalidModelError(
        f"Model '{entry.name}' is damaged: {why}. Loading it could crash or produce garbage.",
        f"Pull it again with `{repull_command(entry.manifest)}` (a damaged copy is rebuilt), "
        f"or remove it with `edge-qwen rm {entry.name}`.",
    )


def repull_command(manifest: Manifest) -> str:
    """The `edge-qwen pull` command line that rebuilds this model from its recorded source."""
    src = manifest.source
    where = src.get("repo") or src.get("path")
    if not where:
        return f"edge-qwen rm {manifest.name} && edge-qwen pull"
    args = ["edge-qwen", "pull", shlex.quote(str(where)), "--quant", manifest.quant]
    if src.get("kind") == "hub-gguf":
        args.append("--gguf")
    revision = src.get("revision")
    if src.get("kind", "").startswith("hub") and revision and revision != "main":
        args += ["--revision", shlex.quote(str(revision))]
    stem = Path(str(where)).stem if src.get("kind") == "gguf" else str(where)
    if manifest.name != model_name(stem, manifest.quant):
        args += ["--name", manifest.name]
    return " ".join(args)


def _identity(st: os.stat_result, sha256: str) -> dict[str, Any]:
    return {
        "sha256": sha256,
        "size": st.st_size,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _read_stamp(entry: Entry) -> dict[str, Any] | None:
    try:
        data = json.loads((entry.folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(entry: Entry, st: os.stat_result) -> None:
    # File times come from a coarse clock (a few ms): a write in the same tick as the
    # stat could leave ctime unchanged. Like git's "racily clean" rule, record nothing
    # for a file changed that recently; the next load hashes it again instead.
    if time.time_ns() - st.st_ctime_ns < _RACY_NS:
        return
    # Best effort: on a read-only store every load simply re-hashes.
    tmp = entry.folder / f".{STAMP}.{os.getpid()}.partial"
    try:
        tmp.write_text(json.dumps(_identity(st, entry.manifest.sha256)), encoding="utf-8")
        os.replace(tmp, entry.folder / STAMP)
    except OSError:
        tmp.unlink(missing_ok=True)


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
