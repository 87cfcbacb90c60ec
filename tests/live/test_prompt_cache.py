"""The prompt cache's disk tier through the real llama.cpp: a long prefix computed once
survives a restart, a sleep and eviction from the shelf, restores to the same next-token
distribution as a computed one, and a damaged or foreign file is never used."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import Settings
from edge.engine import Engine, Finish, SamplingParams, ThinkingControl, TokenEvent
from edge.engine.diskcache import DISK_MIN
from edge.engine.plan import make_plan, read_model_info
from tests.support.live_server import serving

NO_GUARD = ThinkingControl(loop_guard=False)
CTX = 4096
TIMEOUT = 120.0


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGE_QWEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def open_engine(path: Path, **wishes: Any) -> Engine:
    info = read_model_info(path)
    return Engine(path, make_plan(info, Settings(ctx=CTX, parallel=2, **wishes)), info)


def chat(i: int, words: int) -> str:
    filler = " ".join(f"w{k}" for k in range(words))
    return f"<|im_start|>user\n({i}) {filler}<|im_end|>\n<|im_start|>assistant\n"


def answer(engine: Engine, prompt: list[int]) -> tuple[list[int], list[Any], Finish]:
    """Greedy tokens, each with the 8 most likely tokens' logprobs at its position."""
    params = SamplingParams(temperature=0, max_tokens=6, logprobs=8)
    ids: list[int] = []
    tops: list[Any] = []
    finish = None
    for e in engine.generate(prompt, params, thinking=NO_GUARD):
        if isinstance(e, TokenEvent) and e.token is not None:
            ids.append(e.token)
            tops.append([(t.token, t.logprob) for t in e.logprobs[0].top])
        elif isinstance(e, Finish):
            finish = e
    assert finish is not None
    return ids, tops, finish


def files(home: Path) -> list[Path]:
    return sorted((home / "prompt-cache").rglob("*.kv"))


def long_prompt(engine: Engine, i: int = 1) -> list[int]:
    prompt = engine.tokenize(chat(i, 700))
    assert len(prompt) > DISK_MIN
    return prompt


def test_a_long_prefix_survives_a_restart_and_decodes_as_computed(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    path = gguf_of("tiny", "Q8_0")
    engine = open_engine(path)
    try:
        prefix = long_prompt(engine)
        question = engine.tokenize("<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n")
        cold = answer(engine, prefix)[2]
        assert cold.usage.cached_tokens == 0
    finally:
        engine.close()  # a clean stop writes the cached sequence
    assert len(files(home)) == 1
    follow = prefix + question
    again = open_engine(path)
    try:
        ids, tops, finish = answer(again, follow)
        assert finish.usage.cached_tokens >= len(prefix) - 1  # read from disk, not computed
        assert again.shelf.disk_hits == 1
    finally:
        again.close()
    computed = open_engine(path, cache_disk=0)
    try:
        ids_c, tops_c, finish_c = answer(computed, follow)
        assert finish_c.usage.cached_tokens == 0
    finally:
        computed.close()
    assert ids == ids_c
    for restored, fresh in zip(tops, tops_c, strict=True):
        assert [t for t, _ in restored] == [t for t, _ in fresh]
        assert [lp for _, lp in restored] == pytest.approx([lp for _, lp in fresh], abs=1e-3)


def test_a_prefix_pushed_off_a_full_shelf_comes_back_from_disk(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    """No RAM shelf at all: a finished conversation parked while others run is on disk
    only, and a later prompt that starts with it waits for the read, not the prefill."""
    path = gguf_of("tiny", "Q8_0")
    engine = open_engine(path, cache_ram=0)
    try:
        a = long_prompt(engine, 1)
        answer(engine, a)
        for i in (2, 3):  # other long conversations take both slots, parking `a`
            answer(engine, long_prompt(engine, i))
        assert engine.shelf.sequences == 0 and engine.shelf.bytes == 0
        deadline = time.monotonic() + TIMEOUT
        while engine.shelf.disk_sequences < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        finish = answer(engine, a[:-2] + engine.tokenize("Go on"))[2]
        assert finish.usage.cached_tokens >= len(a) - 2
        assert engine.shelf.disk_hits >= 1
    finally:
        engine.close()


def test_a_damaged_file_is_deleted_and_the_prompt_read_again(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    path = gguf_of("tiny", "Q8_0")
    engine = open_engine(path)
    try:
        prefix = long_prompt(engine)
        first = answer(engine, prefix)
    finally:
        engine.close()
    (file,) = files(home)
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of KV flipped
    file.write_bytes(bytes(raw))
    again = open_engine(path)
    try:
        ids, tops, finish = answer(again, prefix)
        assert finish.usage.cached_tokens == 0  # computed, not trusted
        assert ids == first[0]
        assert again.shelf.disk_hits == 0
    finally:
        again.close()
    # The damaged file is gone; the clean close wrote the recomputed sequence afresh.
    assert file.exists() and file.read_bytes() != bytes(raw)


def test_another_models_file_is_never_used(home: Path, gguf_of: Callable[[str, str], Path]) -> None:
    tiny, scripted = gguf_of("tiny", "Q8_0"), gguf_of("scripted", "Q8_0")
    engine = open_engine(tiny)
    try:
        prefix = long_prompt(engine)
        answer(engine, prefix)
    finally:
        engine.close()
    (file,) = files(home)
    other = open_engine(scripted)
    try:
        assert other._disk is not None and other._disk.ready.wait(TIMEOUT)
        folder = other._disk.folder
        assert folder is not None and folder != file.parent  # a folder per model file
        shutil.copy(file, folder / file.name)  # planted where this model looks
        other._disk._scan()  # the folder read again, as before every write
        finish = answer(other, prefix)[2]
        assert finish.usage.cached_tokens == 0
        assert not (folder / file.name).exists()  # foreign: deleted, not trusted
    finally:
        other.close()


def test_the_server_keeps_a_long_prompt_across_sleep(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    body = {
        "model": "qwen3-test",
        "messages": [{"role": "user", "content": " ".join(f"w{k}" for k in range(700))}],
        "max_tokens": 2,
        "temperature": 0,
    }
    with serving(gguf_of("tiny", "Q8_0"), Settings(idle=3600), n_ctx=CTX, parallel=2) as (url, app):
        cold = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT).json()
        assert cold["usage"]["prompt_tokens"] > DISK_MIN
        details = cold["usage"].get("prompt_tokens_details") or {}
        assert not details.get("cached_tokens")
        # Ask it to sleep now (the Ollama way: keep_alive 0), then wake it with the same prompt.
        slept = {**body, "keep_alive": 0}
        httpx.post(f"{url}/v1/chat/completions", json=slept, timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while app.state.runtime.state != "asleep":
            assert time.monotonic() < deadline, "the model did not sleep"
            time.sleep(0.05)
        while not files(home):  # the engine closes on a thread of its own after sleeping
            assert time.monotonic() < deadline, "sleeping wrote no prompt cache file"
            time.sleep(0.05)
        warm = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
        assert warm.headers.get("edge-qwen-load-ms")  # it woke for this request
        cached = warm.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert cached >= cold["usage"]["prompt_tokens"] - 8
        metrics = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
        assert "edge_prompt_cache_disk_hits_total 1" in metrics


def test_the_server_writes_its_cached_prompts_when_it_stops(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    """One request, then a stop: the prompt was never parked (nothing else ran), so only
    the clean stop can have written it; the next start reads it instead of computing it."""
    body = {
        "model": "qwen3-test",
        "messages": [{"role": "user", "content": " ".join(f"v{k}" for k in range(700))}],
        "max_tokens": 2,
        "temperature": 0,
    }
    path = gguf_of("tiny", "Q8_0")
    with serving(path, n_ctx=CTX, parallel=2) as (url, _):
        cold = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT).json()
        assert files(home) == []
    assert len(files(home)) == 1
    with serving(path, n_ctx=CTX, parallel=2) as (url, _):
        warm = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT).json()
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] >= (
        cold["usage"]["prompt_tokens"] - 8
    )


def test_ram_and_disk_stay_within_their_caps_when_filled(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    """Six long conversations, each parked while the next runs, into a shelf and a disk
    that hold about two: both caps hold, and the newest are the ones kept."""
    path = gguf_of("tiny", "Q8_0")
    probe = open_engine(path, cache_ram=0, cache_disk=0)
    try:
        answer(probe, long_prompt(probe))
        size = probe._size(probe._slots[0])  # noqa: SLF001  (one conversation's state)
    finally:
        probe.close()
    mib = 1 << 20
    ram, disk = -(-int(2.5 * size) // mib), -(-int(2.5 * size) // mib)  # MiB, rounded up
    engine = open_engine(path, cache_ram=ram, cache_disk=disk)
    try:
        for i in range(1, 7):
            answer(engine, long_prompt(engine, i))
            assert engine.shelf.peak_bytes <= ram * mib
        deadline = time.monotonic() + TIMEOUT
        while engine._disk is not None and engine._disk.pending:  # noqa: SLF001
            assert time.monotonic() < deadline
            time.sleep(0.05)
        held = sum(f.stat().st_size for f in files(home))
        assert 0 < held <= disk * mib
        assert 1 <= len(files(home)) <= 2
        newest = long_prompt(engine, 5)
        assert engine._disk is not None and engine._disk.best(newest)[1] >= len(newest) - 1  # noqa: SLF001
    finally:
        engine.close()
    assert sum(f.stat().st_size for f in files(home)) <= disk * mib  # after the close's writes


def test_an_agents_next_question_copies_nothing_once_the_prefix_is_on_disk(
    home: Path, gguf_of: Callable[[str, str], Path]
) -> None:
    """The same long prefix, a new short question each time: the slot keeps the prefix
    in place; the old question and answer are dropped, not copied whole to the shelf,
    except the first time, when the disk does not have the prefix yet."""
    path = gguf_of("tiny", "Q8_0")
    engine = open_engine(path)
    try:
        prefix = long_prompt(engine)[:-5]

        def ask(q: str) -> Finish:  # a question longer than a regenerate's slack
            q = f"{q} " + " ".join(f"{q[0]}{k}" for k in range(20))
            turn = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
            return answer(engine, prefix + engine.tokenize(turn))[2]

        ask("First question?")
        assert ask("Second question?").usage.cached_tokens >= len(prefix)
        assert engine.shelf.sequences == 1  # parked once, so that it could be written
        deadline = time.monotonic() + TIMEOUT
        while not files(home) or (engine._disk is not None and engine._disk.pending):  # noqa: SLF001
            assert time.monotonic() < deadline
            time.sleep(0.05)
        peak = engine.shelf.peak_bytes
        for q in ("Third?", "Fourth?"):
            assert ask(q).usage.cached_tokens >= len(prefix)
        assert engine.shelf.sequences == 1 and engine.shelf.peak_bytes == peak
        assert len(files(home)) == 1  # the prefix is written once
    finally:
        engine.close()
