"""The prompt cache's disk tier: long prefixes' KV kept across eviction, sleep and restarts.

Why: an agent sends the same 7–19k-token prefix with every request, and on a laptop CPU
reading it costs minutes (llama.cpp's own prefill speed; nothing in the engine makes it
cheap). The RAM shelf (`edge.engine.shelf`) keeps it while the process lives; this keeps
it on disk, so a restart, a wake from sleep or a full shelf costs a file read instead.

What is written: a parked or closing sequence of at least `DISK_MIN` tokens (shorter ones
are seconds of prefill at most), unless a file already holds most of it: a file is
written only when it adds `DISK_MIN` tokens and half again to the longest prefix already
on disk, so an agent's 13k-token prefix is written once, not after every question, and a
growing conversation a few times, not every turn (the SSD's wear and the writer's CPU).
A file that the new one extends is deleted once the new one is in place.

Where: one folder per model file and KV layout under the home's `prompt-cache/`. A file
names its model by the GGUF's sha256 (computed once per file, remembered by inode, size
and mtime), the KV type, flash attention's V layout and llama-cpp-python's version, and
carries the tokens it holds and a CRC of everything; a file that fails any of these is
deleted, never used. Writes go to a temporary name and are renamed into place, on a
thread of their own at low priority, so the token path never waits for a disk. Least
recently used files (mtime, touched on use) go first when the byte cap needs room.

Pure file bookkeeping and numpy: no llama.cpp here (the scheduler turns the bytes into
KV cells with llama_state_seq_set_data).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edge.engine.shelf import Parked
from edge.fileio import atomic_output

log = logging.getLogger(__name__)

DISK_MIN = 1024  # tokens: shorter prefixes are not worth a file
GROW = 0.5  # a longer version of a stored prefix is written once it adds half again
MAGIC, FORMAT = b"EQKVCACH", 1
_HEAD = struct.Struct("<8sII")  # magic, format, header length
SUFFIX, TMP = ".kv", ".partial"  # the files; edge.fileio.atomic_output's temporaries
STALE_TMP_S = 600.0  # a temporary file this old belongs to a writer that died
WRITER_NICE = 10
CHUNK = 8 << 20


@dataclass(frozen=True)
class Identity:
    """What a file's KV bytes depend on: only a file with the same identity is used."""

    model: str  # the GGUF file's sha256
    kv: str  # KV type (f16, q8_0, f32)
    flash: bool  # flash attention stores V untransposed
    llama: str  # llama-cpp-python's version: its state format may change between releases

    @property
    def folder(self) -> str:
        return f"{self.model[:16]}-{self.kv}{'-fa' if self.flash else ''}"

    def fields(self) -> dict[str, object]:
        return {"model": self.model, "kv": self.kv, "flash": self.flash, "llama": self.llama}


@dataclass(frozen=True)
class DiskEntry:
    """One file: the tokens whose KV it holds."""

    path: Path
    tokens: np.ndarray  # int32
    size: int  # the file's bytes
    used: float  # mtime: last written or read


@dataclass
class Fetch:
    """A file being read for a waiting job: `done` once `parked` is set (None: unusable)."""

    entry: DiskEntry
    done: bool = False
    parked: Parked | None = None


@dataclass
class _Write:
    tokens: np.ndarray
    data: np.ndarray


@dataclass
class _Queue:
    writes: deque[_Write] = field(default_factory=deque)
    pending: int = 0  # bytes of the queued writes (RAM held until written)


def fingerprint(path: Path, memo: Path) -> str:
    """The sha256 of `path`, read once per file: remembered in `memo` by the file's real
    path, inode, size and mtime (a store's model is never changed in place; a replaced
    file has another inode or mtime)."""
    st = path.stat()
    real = str(path.resolve())
    stamp = [st.st_ino, st.st_size, st.st_mtime_ns]
    known: dict[str, dict[str, object]] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(memo.read_text())
    seen = known.get(real)
    if (
        isinstance(seen, dict)
        and seen.get("stamp") == stamp
        and isinstance(seen.get("sha256"), str)
    ):
        return str(seen["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    known[real] = {"stamp": stamp, "sha256": digest}
    with contextlib.suppress(OSError):
        with atomic_output(memo) as tmp:
            tmp.write_bytes(json.dumps(known).encode())
    return digest


def common(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens two int32 arrays share."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def as_tokens(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(tokens, dtype="<i4")


class DiskCache:
    """The files of one model and KV layout under `root`, at most `cap` bytes of them.

    Thread use: the scheduler calls `ready`, `best`, `wants`, `save` and `load` (none of
    them touches the disk); one writer thread writes, deletes and scans; each `load`
    reads on a thread of its own and calls `poke` when done."""

    def __init__(
        self,
        root: Path,
        cap: int,
        model: Path,
        kv: str,
        flash: bool,
        llama: str,
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.root, self.cap, self._poke = Path(root), max(0, cap), poke
        self._spec = (Path(model), kv, flash, llama)
        self.identity: Identity | None = None
        self.folder: Path | None = None
        self._lock = threading.Condition()
        self._index: dict[str, DiskEntry] = {}  # file name → entry
        self._hidden: set[str] = set()  # forgotten: never used again by this process
        self._q = _Queue()
        self._closing = False
        self.max_pending = 0  # set by the engine: the RAM that queued writes may hold
        self.ready = threading.Event()
        self.hits = 0
        # Whether any file existed at start (a quick look, before the model is hashed):
        # if none did, nothing can be found and no job waits for the tier to open.
        self.had_files = any(self.root.glob(f"*/*{SUFFIX}")) if self.root.is_dir() else False
        self._thread = threading.Thread(target=self._run, name="edge-kv-disk", daemon=True)
        self._thread.start()

    # -- the scheduler's calls (no disk I/O) ------------------------------------------

    def best(self, prompt: Sequence[int] | np.ndarray) -> tuple[DiskEntry | None, int]:
        """The file sharing the longest prefix with `prompt`, and how many tokens it shares."""
        p = as_tokens(prompt)
        found, shared = None, 0
        with self._lock:
            for entry in self._index.values():
                n = common(entry.tokens, p)
                if n > shared:
                    found, shared = entry, n
        return found, shared

    def wants(self, tokens: Sequence[int] | np.ndarray) -> bool:
        """Whether a sequence holding `tokens` is worth a file (see the module docstring)."""
        if not self.cap or len(tokens) < DISK_MIN:
            return False
        _, stored = self.best(tokens)
        return len(tokens) - stored >= max(DISK_MIN, GROW * stored)

    def save(self, tokens: Sequence[int], data: np.ndarray) -> bool:
        """Queue a file for `tokens` holding `data` (llama_state_seq_get_data's bytes, not
        copied: the caller never changes them). False when the queue already holds its
        share of RAM: the writer is behind, and a cache may skip a write."""
        with self._lock:
            if self._closing:
                return False
            if self._q.pending and self._q.pending + data.nbytes > self.max_pending:
                log.info("the prompt cache's writer is behind; not writing a prefix")
                return False
            self._q.writes.append(_Write(as_tokens(tokens), data))
            self._q.pending += data.nbytes
            self._lock.notify_all()
        return True

    def load(self, entry: DiskEntry) -> Fetch:
        """Read `entry` on a thread of its own; `poke` is called when the fetch is done."""
        fetch = Fetch(entry)
        threading.Thread(target=self._read, args=(fetch,), name="edge-kv-read", daemon=True).start()
        return fetch

    def forget(self) -> None:
        """Use none of the files there are now (measurements of a cold start)."""
        with self._lock:
            self._hidden.update(self._index)
            self._index.clear()

    @property
    def pending(self) -> int:
        return self._q.pending

    def usage(self) -> tuple[int, int]:
        """(files, bytes) this process knows of."""
        with self._lock:
            return len(self._index), sum(e.size for e in self._index.values())

    def close(self, timeout: float) -> None:
        """Finish the queued writes (within `timeout` seconds), then stop the writer."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the prompt cache's writer did not finish in %.0f s", timeout)

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        try:
            self._open()
        except Exception as exc:  # a read-only or full home: the RAM shelf goes on alone
            log.warning("the prompt cache on disk is off: %s", exc)
            with self._lock:
                self.cap = 0
        finally:
            self.ready.set()
            self._poke()
        while True:
            with self._lock:
                while not (self._q.writes or self._closing):
                    self._lock.wait()
                if not self._q.writes:
                    return
                job = self._q.writes.popleft()
            try:
                if self.cap:
                    self._write(job)
            except Exception:  # a full disk, a read-only home: the cache goes on without it
                log.exception("could not write a prompt cache file")
            finally:
                with self._lock:
                    self._q.pending -= job.data.nbytes

    def _open(self) -> None:
        model, kv, flash, llama = self._spec
        self.root.mkdir(parents=True, exist_ok=True)
        digest = fingerprint(model, self.root / "models.json")
        self.identity = Identity(digest, kv, flash, llama)
        self.folder = self.root / self.identity.folder
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        """Bring the index in line with the folder (another process may share it): new
        files' headers are read, foreign or damaged ones deleted, vanished ones dropped."""
        assert self.folder is not None and self.identity is not None
        seen: dict[str, DiskEntry] = {}
        now = time.time()
        for item in os.scandir(self.folder):
            name = item.name
            try:
                st = item.stat()
                if name.endswith(TMP):
                    if now - st.st_mtime > STALE_TMP_S:
                        os.unlink(item.path)
                    continue
                if not name.endswith(SUFFIX) or name in self._hidden:
                    continue
                known = self._index.get(name)
                if known is not None and known.size == st.st_size:
                    seen[name] = DiskEntry(known.path, known.tokens, st.st_size, st.st_mtime)
                    continue
                with open(item.path, "rb") as f:
                    tokens, _, _ = read_header(f, self.identity)
                seen[name] = DiskEntry(Path(item.path), tokens, st.st_size, st.st_mtime)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.info("deleting prompt cache file %s: %s", name, exc)
                with contextlib.suppress(OSError):
                    os.unlink(item.path)
        with self._lock:
            self._index = seen

    def _write(self, job: _Write) -> None:
        assert self.folder is not None and self.identity is not None
        self._scan()
        if not self.wants(job.tokens):  # another process wrote it meanwhile
            return
        head = header(self.identity, job.tokens, job.data)
        size = len(head) + job.tokens.nbytes + job.data.nbytes
        if size > self.cap:
            return
        self._make_room(size)
        name = hashlib.sha256(job.tokens.tobytes()).hexdigest()[:32] + SUFFIX
        final = self.folder / name
        with atomic_output(final) as tmp:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(head)
                f.write(job.tokens.tobytes())
                f.write(job.data.data)
        entry = DiskEntry(final, job.tokens, size, time.time())
        with self._lock:
            self._hidden.discard(name)
            self._index[name] = entry
            # Files holding a prefix of this one are superseded by it.
            old = [k for k, e in self._index.items() if k != name and _starts(job.tokens, e)]
        for k in old:
            self._delete(k)

    def _make_room(self, size: int) -> None:
        """Delete the least recently used files, of any model, until `size` more bytes fit
        the cap (which covers the whole prompt cache, not one model's folder)."""
        files: list[tuple[float, int, str]] = []
        tmp = 0
        for sub in os.scandir(self.root):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for item in os.scandir(sub.path):
                with contextlib.suppress(OSError):
                    st = item.stat()
                    if item.name.endswith(TMP):
                        tmp += st.st_size
                    elif item.name.endswith(SUFFIX):
                        files.append((st.st_mtime, st.st_size, item.path))
        held = tmp + sum(f[1] for f in files)
        for _, nbytes, path in sorted(files):
            if held + size <= self.cap:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            held -= nbytes
            if os.path.dirname(path) == str(self.folder):
                with self._lock:
                    self._index.pop(os.path.basename(path), None)

    def _delete(self, name: str) -> None:
        with self._lock:
            entry = self._index.pop(name, None)
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()

    # -- reading ------------------------------------------------------------------------

    def _read(self, fetch: Fetch) -> None:
        entry = fetch.entry
        try:
            fetch.parked = self._read_entry(entry)
        except FileNotFoundError:  # another process made room
            with self._lock:
                self._index.pop(entry.path.name, None)
        except (OSError, ValueError) as exc:
            log.info("deleting prompt cache file %s: %s", entry.path.name, exc)
            with self._lock:
                self._index.pop(entry.path.name, None)
            with contextlib.suppress(OSError):
                entry.path.unlink()
        finally:
            fetch.done = True
            self._poke()

    def _read_entry(self, entry: DiskEntry) -> Parked:
        assert self.identity is not None
        with open(entry.path, "rb") as f:
            tokens, nbytes, crc = read_header(f, self.identity)
            data = np.empty(nbytes, dtype=np.uint8)
            if f.readinto(data.data) != nbytes or f.read(1):
                raise ValueError("truncated or oversized")
        if zlib.crc32(data.data, zlib.crc32(tokens.tobytes())) != crc:
            raise ValueError("checksum mismatch")
        with contextlib.suppress(OSError):
            os.utime(entry.path)  # used: last to go
        self.hits += 1
        return Parked(tuple(tokens.tolist()), data)


def header(identity: Identity, tokens: np.ndarray, data: np.ndarray) -> bytes:
    """A file's head: magic, format, then a JSON header (identity, sizes, CRC)."""
    crc = zlib.crc32(data.data, zlib.crc32(tokens.tobytes()))
    meta = {**identity.fields(), "tokens": len(tokens), "bytes": int(data.nbytes), "crc": crc}
    body = json.dumps(meta, sort_keys=True).encode()
    return _HEAD.pack(MAGIC, FORMAT, len(body)) + body


def read_header(f: BinaryIO, identity: Identity | None) -> tuple[np.ndarray, int, int]:
    """(tokens, payload bytes, crc) from an open file at its start; ValueError when it is
    not ours, of another format or identity, or cut short. `identity` None: any."""
    meta = _meta(f)
    if identity is not None and any(meta.get(k) != v for k, v in identity.fields().items()):
        raise ValueError("made for another model, KV type or llama.cpp")
    count = int(meta["tokens"])
    raw = f.read(4 * count)
    if len(raw) != 4 * count:
        raise ValueError("truncated")
    return np.frombuffer(raw, dtype="<i4"), int(meta["bytes"]), int(meta["crc"])


def describe(path: Path) -> dict[str, Any]:
    """A file's header as `edge-qwen cache ls` shows it (ValueError when unreadable)."""
    with open(path, "rb") as f:
        return _meta(f)


def _meta(f: BinaryIO) -> dict[str, Any]:
    """The JSON header after the magic and format, from an open file at its start."""
    head = f.read(_HEAD.size)
    if len(head) != _HEAD.size:
        raise ValueError("not a prompt cache file")
    magic, fmt, n = _HEAD.unpack(head)
    if magic != MAGIC or fmt != FORMAT or n > 4096:
        raise ValueError("not a prompt cache file of this format")
    return dict(json.loads(f.read(n)))


def _starts(tokens: np.ndarray, entry: DiskEntry) -> bool:
    return len(entry.tokens) <= len(tokens) and common(entry.tokens, tokens) == len(entry.tokens)


# -- what `edge-qwen cache` shows and clears ----------------------------------------------


@dataclass(frozen=True)
class StoredPrompt:
    """One file as `edge-qwen cache ls` lists it."""

    path: Path
    tokens: int
    size: int
    used: float  # mtime
    kv: str
    model: str  # the GGUF's sha256
    model_file: str | None  # where that GGUF was last seen (the fingerprint memo)


def inventory(root: Path) -> list[StoredPrompt]:
    """Every readable file under `root`, newest use first (unreadable ones are skipped:
    the server deletes them when it reads the folder)."""
    if not root.is_dir():
        return []
    seen: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError, AttributeError):
        memo = json.loads((root / "models.json").read_text())
        seen = {v["sha256"]: k for k, v in memo.items()}
    found = []
    for path in root.glob(f"*/*{SUFFIX}"):
        try:
            meta, st = describe(path), path.stat()
            model = str(meta["model"])
            kv = f"{meta['kv']}{' (flash attention)' if meta.get('flash') else ''}"
            found.append(
                StoredPrompt(
                    path,
                    int(str(meta["tokens"])),
                    st.st_size,
                    st.st_mtime,
                    kv,
                    model,
                    seen.get(model),
                )
            )
        except (OSError, ValueError, KeyError, struct.error):
            continue
    return sorted(found, key=lambda p: -p.used)


def clear(root: Path, model_sha: str | None = None) -> tuple[int, int]:
    """Delete the files (of one model when `model_sha` is given, else all, temporaries
    included); returns (files, bytes) deleted."""
    files = n = 0
    if not root.is_dir():
        return 0, 0
    for sub in root.iterdir():
        if not sub.is_dir() or (model_sha is not None and not sub.name.startswith(model_sha[:16])):
            continue
        for path in sub.iterdir():
            if path.name.endswith((SUFFIX, TMP)):
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    files, n = files + 1, n + size
    return files, n
