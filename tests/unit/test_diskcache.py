"""The prompt cache's disk tier as files: round trip, the growth rule, the byte cap and LRU,
damaged and foreign files, stale temporaries (edge.engine.diskcache; no llama.cpp here:
the KV bytes are random, the live tests restore real ones)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.engine.diskcache import DISK_MIN, DiskCache, Fetch, fingerprint

WAIT = 20.0


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    return path


@pytest.fixture
def caches(tmp_path: Path, model: Path) -> Iterator[list[DiskCache]]:
    made: list[DiskCache] = []
    yield made
    for cache in made:
        cache.close(WAIT)


def open_cache(
    made: list[DiskCache], root: Path, model: Path, cap: int = 1 << 30, llama: str = "1.0"
) -> DiskCache:
    cache = DiskCache(root, cap, model, "f16", False, llama)
    cache.max_pending = 1 << 30
    made.append(cache)
    assert cache.ready.wait(WAIT)
    return cache


def tokens(n: int, first: int = 0) -> list[int]:
    return list(range(first, first + n))


def kv(nbytes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


def settle(cache: DiskCache) -> None:
    """Wait until the queued writes are on disk."""
    deadline = time.monotonic() + WAIT
    while cache.pending:
        assert time.monotonic() < deadline, "the writer did not finish"
        time.sleep(0.01)


def fetched(cache: DiskCache, prompt: list[int]) -> Fetch:
    entry, _ = cache.best(prompt)
    assert entry is not None
    fetch = cache.load(entry)
    deadline = time.monotonic() + WAIT
    while not fetch.done:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return fetch


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.kv"))


def held(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix != ".json")


def test_a_saved_prefix_comes_back_whole_after_a_restart(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    cache = open_cache(caches, root, model)
    data = kv(50_000)
    assert cache.save(tokens(1500), data)
    settle(cache)
    (path,) = files(root)
    assert path.stat().st_mode & 0o777 == 0o600  # prompts are private
    again = open_cache(caches, root, model)  # a new process: the index is read from the folder
    entry, shared = again.best(tokens(1200) + [7, 7])
    assert entry is not None and shared == 1200
    fetch = fetched(again, tokens(1500))
    assert fetch.parked is not None
    assert fetch.parked.tokens == tuple(tokens(1500))
    assert np.array_equal(fetch.parked.data, data)
    assert again.hits == 1


def test_short_or_mostly_stored_prefixes_are_not_written_again(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    cache = open_cache(caches, root, model)
    assert not cache.wants(tokens(DISK_MIN - 1))  # seconds of prefill at most
    assert cache.wants(tokens(2000))
    cache.save(tokens(2000), kv(1000))
    settle(cache)
    # The agent's next question: the same prefix and a short tail.
    assert not cache.wants(tokens(2000) + tokens(300, 90_000))
    # A conversation grown by less than half again (and DISK_MIN) waits; more is written...
    assert not cache.wants(tokens(2900))
    assert cache.wants(tokens(3100))
    cache.save(tokens(3100), kv(1500, 1))
    settle(cache)
    # ...and deletes the file it extends.
    (path,) = files(root)
    assert fetched(cache, tokens(3100)).parked is not None
    assert cache.usage()[0] == 1 and path.exists()


def test_the_cap_holds_and_the_least_recently_used_goes_first(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    size = 100_000
    cache = open_cache(caches, root, model, cap=int(3.5 * size))
    for i in range(3):
        cache.save(tokens(1100, 10_000 * (i + 1)), kv(size, i))
        settle(cache)
    old = files(root)
    assert len(old) == 3
    for age, path in enumerate(sorted(old, key=lambda p: p.stat().st_mtime)):
        os.utime(path, (1e9 + age, 1e9 + age))  # written in this order, long ago
    first = tokens(1100, 10_000)
    assert fetched(cache, first).parked is not None  # a use: now the most recent
    for i in (3, 4):  # room for each is made by deleting the oldest untouched file
        cache.save(tokens(1100, 10_000 * (i + 1)), kv(size, i))
        settle(cache)
    assert cache.best(first)[1] == 1100  # the one used survived
    assert cache.best(tokens(1100, 20_000))[1] == cache.best(tokens(1100, 30_000))[1] == 0
    for i in range(5, 10):  # far more than the cap holds
        cache.save(tokens(1100, 10_000 * (i + 1)), kv(size, i))
        settle(cache)
        assert held(root) <= cache.cap
    assert cache.save(tokens(1100, 900_000), kv(int(4 * size)))  # bigger than the cap
    settle(cache)
    assert held(root) <= cache.cap


def test_the_cap_covers_every_models_files(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF another model")
    size = 100_000
    a = open_cache(caches, root, model, cap=int(2.5 * size))
    b = open_cache(caches, root, other, cap=int(2.5 * size))
    assert a.folder != b.folder
    for i in range(3):
        for cache in (a, b):
            cache.save(tokens(1100, 10_000 * (i + 1)), kv(size, i))
            settle(cache)
            assert held(root) <= a.cap


def test_a_damaged_file_is_deleted_not_used(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    cache = open_cache(caches, root, model)
    cache.save(tokens(1500), kv(50_000))
    settle(cache)
    (path,) = files(root)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # one bit of KV flipped on disk
    path.write_bytes(bytes(raw))
    fetch = fetched(cache, tokens(1500))
    assert fetch.parked is None and not path.exists()
    assert cache.best(tokens(1500)) == (None, 0)


def test_a_truncated_or_foreign_file_is_deleted_when_the_folder_is_read(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    cache = open_cache(caches, root, model)
    cache.save(tokens(1500), kv(50_000))
    cache.save(tokens(1500, 50_000), kv(50_000, 1))
    settle(cache)
    cut, whole = files(root)
    cut.write_bytes(cut.read_bytes()[:30])  # a crash mid-write of a file renamed anyway
    (cache.folder / "junk.kv").write_bytes(b"not ours")  # type: ignore[operator]
    again = open_cache(caches, root, model)
    assert files(root) == [whole]
    assert again.usage()[0] == 1
    # Another llama.cpp build's files: its state format may differ, so they are dropped.
    newer = open_cache(caches, root, model, llama="2.0")
    assert newer.folder == cache.folder and files(root) == []


def test_stale_temporary_files_are_cleared_fresh_ones_kept(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    root = tmp_path / "pc"
    cache = open_cache(caches, root, model)
    assert cache.folder is not None
    stale, fresh = cache.folder / ".a.kv.1.partial", cache.folder / ".b.kv.2.partial"
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    os.utime(stale, (1e9, 1e9))  # a writer that died long ago
    open_cache(caches, root, model)
    assert not stale.exists() and fresh.exists()  # another process may be writing it


def test_forget_hides_the_files_there_are(
    tmp_path: Path, model: Path, caches: list[DiskCache]
) -> None:
    cache = open_cache(caches, tmp_path / "pc", model)
    cache.save(tokens(1500), kv(10_000))
    settle(cache)
    cache.forget()
    assert cache.best(tokens(1500)) == (None, 0)
    assert cache.wants(tokens(1500))  # a cold measurement may write it again


def test_a_cap_of_zero_writes_nothing(tmp_path: Path, model: Path, caches: list[DiskCache]) -> None:
    cache = open_cache(caches, tmp_path / "pc", model, cap=0)
    assert not cache.wants(tokens(5000))


def test_the_fingerprint_is_the_files_sha256_and_follows_a_change(tmp_path: Path) -> None:
    import hashlib

    path, memo = tmp_path / "m.gguf", tmp_path / "models.json"
    path.write_bytes(b"one model")
    assert fingerprint(path, memo) == hashlib.sha256(b"one model").hexdigest()
    assert memo.exists()
    assert fingerprint(path, memo) == hashlib.sha256(b"one model").hexdigest()  # remembered
    path.write_bytes(b"another model")
    os.utime(path, (1e9, 1e9))
    assert fingerprint(path, memo) == hashlib.sha256(b"another model").hexdigest()


def test_cache_ls_and_clear(
    tmp_path: Path, model: Path, caches: list[DiskCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    home = tmp_path / "home"
    monkeypatch.setenv("EDGE_QWEN_HOME", str(home))
    monkeypatch.setenv("EDGE_QWEN_CACHE_DISK", "64")
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF another model")
    a = open_cache(caches, home / "prompt-cache", model)
    b = open_cache(caches, home / "prompt-cache", other)
    a.save(tokens(1500), kv(20_000))
    settle(a)
    time.sleep(0.05)  # listed newest use first
    b.save(tokens(2500), kv(30_000))
    settle(b)
    listed = CliRunner().invoke(app, ["cache", "ls"])
    assert listed.exit_code == 0, listed.output
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert [(line[0], line[-1]) for line in lines] == [("2,500", "other.gguf"), ("1,500", "m.gguf")]
    assert "2 prompts" in listed.output and "of 64.0 MiB" in listed.output
    one = CliRunner().invoke(app, ["cache", "clear", "--model", str(other)])
    assert one.exit_code == 0 and "deleted 1 prompt cache files" in one.output
    assert len(files(home)) == 1
    CliRunner().invoke(app, ["cache", "clear"])
    assert files(home) == []
    missing = CliRunner().invoke(app, ["cache", "clear", "--model", str(tmp_path / "nope.gguf")])
    assert missing.exit_code != 0 and "No such model file" in missing.output
