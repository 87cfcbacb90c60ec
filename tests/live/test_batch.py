"""The batching engine through the real llama.cpp: outputs equal to decoding alone, joins and
leaves mid-flight, cancellation within a step, prefix reuse, a full cache, and 8 clients
through the real server. (The contract tests in test_engine.py run with one slot and two.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import Settings
from edge.engine import Engine, Finish, Job, Run, SamplingParams, ThinkingControl, TokenEvent
from edge.engine.plan import make_plan, read_model_info
from edge.errors import ContextFullError, EngineClosedError
from tests.support.live_server import serving

NO_GUARD = ThinkingControl(loop_guard=False)
TIMEOUT = 120.0


def open_batch(path: Path, parallel: int, n_ctx: int = 2048) -> Engine:
    info = read_model_info(path)
    return Engine(path, make_plan(info, Settings(ctx=n_ctx, parallel=parallel)), info)


def chat(i: int, words: int) -> str:
    filler = " ".join(f"w{k}" for k in range(words))
    return f"<|im_start|>user\n({i}) {filler}<|im_end|>\n<|im_start|>assistant\n"


def tokens_of(events: Iterator[Any]) -> tuple[list[int], Finish]:
    ids, finish = [], None
    for e in events:
        if isinstance(e, TokenEvent) and e.token is not None:
            ids.append(e.token)
        elif isinstance(e, Finish):
            finish = e
    assert finish is not None
    return ids, finish


def run_together(
    engine: Engine,
    jobs: list[tuple[list[int], SamplingParams, float]],
    cancel_after: dict[int, int] | None = None,
) -> list[tuple[list[int], Finish]]:
    """Start job i after its delay; job k in `cancel_after` leaves after that many tokens."""
    results: list[Any] = [None] * len(jobs)

    def one(i: int) -> None:
        prompt, params, delay = jobs[i]
        time.sleep(delay)
        ids: list[int] = []
        finish = None
        run = Run(engine, Job(prompt, params, NO_GUARD))
        for e in run:
            if isinstance(e, TokenEvent) and e.token is not None:
                ids.append(e.token)
                if cancel_after and len(ids) == cancel_after.get(i, -1):
                    run.ticket.cancel()
            elif isinstance(e, Finish):
                finish = e
        results[i] = (ids, finish)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert all(r is not None for r in results), "a generation did not finish"
    return results


@pytest.mark.parametrize(("which", "qtype"), [("tiny", "Q4_K_M"), ("scripted", "Q8_0")])
def test_batched_output_equals_alone(
    which: str, qtype: str, gguf_of: Callable[[str, str], Path]
) -> None:
    path = gguf_of(which, qtype)
    engine = open_batch(path, parallel=4)
    # Mixed lengths, one prompt longer than a step's 512 tokens (read in chunks), six
    # requests for four slots (two wait), staggered joins, and one that leaves early.
    prompts = [engine.tokenize(chat(i, words)) for i, words in enumerate([3, 40, 160, 8, 120, 1])]
    assert len(prompts[2]) > 512  # more than one step's worth
    params = [SamplingParams(temperature=0, max_tokens=n) for n in (48, 30, 40, 60, 20, 64)]
    try:
        alone = [
            tokens_of(engine.generate(p, s, thinking=NO_GUARD))[0]
            for p, s in zip(prompts, params, strict=True)
        ]
        jobs = [(p, s, 0.02 * i) for i, (p, s) in enumerate(zip(prompts, params, strict=True))]
        together = run_together(engine, jobs, cancel_after={3: 5})
    finally:
        engine.close()
    for i, (ids, finish) in enumerate(together):
        if i == 3:  # left after 5 tokens: what it got is the start of its answer alone
            assert finish.reason == "cancelled" and ids == alone[3][: len(ids)]
            assert len(ids) <= 6  # freed within one step of leaving
            continue
        assert ids == alone[i], f"request {i} differs when batched"
        assert finish.usage.completion_tokens == len(ids)
    single = open_any_single(path)
    try:
        for i in (0, 2, 5):  # and alone on one slot, as the chat CLI runs the engine
            ids, _ = tokens_of(single.generate(prompts[i], params[i], thinking=NO_GUARD))
            assert ids == alone[i]
    finally:
        single.close()


def open_any_single(path: Path) -> Engine:  # one slot: make_plan's default
    info = read_model_info(path)
    return Engine(path, make_plan(info, Settings(ctx=2048)), info)


def test_a_waiting_request_starts_when_a_slot_is_cancelled(
    gguf_of: Callable[[str, str], Path],
) -> None:
    engine = open_batch(gguf_of("looping", "Q8_0"), parallel=1, n_ctx=4096)
    prompt = engine.tokenize(chat(0, 2))
    second: list[Any] = []

    def waiter() -> None:
        short = SamplingParams(temperature=0, max_tokens=5)
        second.append(tokens_of(engine.generate(prompt, short, thinking=NO_GUARD)))

    t = threading.Thread(target=waiter)
    finish = None
    try:
        run = Run(engine, Job(prompt, SamplingParams(temperature=0, max_tokens=3000), NO_GUARD))
        for e in run:
            if isinstance(e, TokenEvent) and not t.is_alive() and not run.ticket.cancelled:
                t.start()  # queued behind this generation: the only slot is taken
                deadline = time.monotonic() + 10
                while engine.waiting == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert engine.waiting == 1
                run.ticket.cancel()
            elif isinstance(e, Finish):
                finish = e
        t.join(TIMEOUT)
    finally:
        engine.close()
    assert finish is not None and finish.reason == "cancelled"
    assert finish.usage.completion_tokens < 300  # stopped at once, not at 3000
    ids, done = second[0]
    assert len(ids) == 5 and done.reason == "length"  # the waiting request got the slot


def test_a_prefix_is_shared_with_a_live_sequence(gguf_of: Callable[[str, str], Path]) -> None:
    path = gguf_of("tiny", "Q8_0")
    system = "<|im_start|>system\n" + " ".join(f"rule{k}" for k in range(150)) + "<|im_end|>\n"
    params = SamplingParams(temperature=0, max_tokens=40)
    first = open_batch(path, parallel=2)
    try:
        a = first.tokenize(system + chat(1, 5))
        b = first.tokenize(system + chat(2, 5))
        shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        b_alone = tokens_of(first.generate(b, params, thinking=NO_GUARD))[0]
        assert first.cached_sequences == 1
    finally:
        first.close()
    engine = open_batch(path, parallel=2)  # nothing cached: b can only borrow from a, live
    try:
        jobs = [(a, SamplingParams(temperature=0, max_tokens=400), 0.0), (b, params, 0.3)]
        (_, fa), (b_ids, fb) = run_together(engine, jobs)
    finally:
        engine.close()
    assert fa.usage.cached_tokens == 0 and fa.usage.completion_tokens == 400
    assert fb.usage.cached_tokens >= shared  # the system prompt was not read again
    assert b_ids == b_alone


def test_finished_sequences_park_on_the_shelf_and_come_back(
    gguf_of: Callable[[str, str], Path],
) -> None:
    engine = open_batch(gguf_of("scripted", "Q8_0"), parallel=2)
    params = SamplingParams(temperature=0, max_tokens=4)
    try:
        for i in range(5):
            tokens_of(engine.generate(engine.tokenize(chat(i, 40)), params))
        # Each job parked the one before it: the live one never attends over their cells.
        assert engine.cached_sequences == 1
        assert engine.shelf.sequences == 4 and engine.shelf.bytes > 0
        again = tokens_of(engine.generate(engine.tokenize(chat(1, 40)), params))[1]
        assert again.usage.cached_tokens > 40  # put back from the shelf, not read again
    finally:
        engine.close()


def test_without_a_shelf_finished_sequences_leave_the_cache_while_others_run(
    gguf_of: Callable[[str, str], Path],
) -> None:
    path = gguf_of("scripted", "Q8_0")
    info = read_model_info(path)
    plan = make_plan(info, Settings(ctx=2048, parallel=2, cache_ram=0))
    engine = Engine(path, plan, info)
    params = SamplingParams(temperature=0, max_tokens=4)
    try:
        for i in range(3):
            tokens_of(engine.generate(engine.tokenize(chat(i, 40)), params))
        assert (
            engine.cached_sequences == 1
            and engine.shelf.sequences == 0
            and engine.shelf.peak_bytes == 0
        )
        again = tokens_of(engine.generate(engine.tokenize(chat(2, 40)), params))[1]
        assert again.usage.cached_tokens > 40  # the last one is still in the cache
        gone = tokens_of(engine.generate(engine.tokenize(chat(0, 40)), params))[1]
        assert gone.usage.cached_tokens < 10  # dropped: only the chat template is shared
    finally:
        engine.close()


@pytest.mark.parametrize("parallel", [1, 2])
def test_the_next_turn_drops_its_previous_turn_instead_of_parking_it(
    gguf_of: Callable[[str, str], Path], parallel: int
) -> None:
    """A chat's next turn renders the last generation prompt differently (no empty think
    block in the history): it still goes on from that turn, in place or from another slot,
    and the old turn is not copied to the shelf, where nothing would ever use it."""
    engine = open_batch(gguf_of("tiny", "Q8_0"), parallel=parallel)
    no_eos = SamplingParams(temperature=0, max_tokens=120, logit_bias={151645: -100.0})
    user = "<|im_start|>user\n" + " ".join(f"q{k}" for k in range(40)) + "<|im_end|>\n"
    think = "<think>\n\n</think>\n\n"
    try:
        first = engine.tokenize(user + "<|im_start|>assistant\n" + think)
        answer, _ = tokens_of(engine.generate(first, no_eos, thinking=NO_GUARD))
        history = engine.tokenize(user + "<|im_start|>assistant\n")
        turn = "<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
        second = history + answer[:20] + engine.tokenize(turn + think)
        done = tokens_of(engine.generate(second, SamplingParams(temperature=0, max_tokens=4)))[1]
        assert done.usage.cached_tokens >= len(history)
        assert engine.shelf.sequences == 0 and engine.shelf.peak_bytes == 0
    finally:
        engine.close()


def test_a_system_prompt_is_shared_from_the_shelf(gguf_of: Callable[[str, str], Path]) -> None:
    engine = open_batch(gguf_of("tiny", "Q8_0"), parallel=2)
    system = "<|im_start|>system\n" + " ".join(f"rule{k}" for k in range(150)) + "<|im_end|>\n"
    params = SamplingParams(temperature=0, max_tokens=4)
    try:
        a = engine.tokenize(system + chat(1, 5))
        b = engine.tokenize(system + chat(2, 5))
        shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        tokens_of(engine.generate(a, params))
        tokens_of(engine.generate(engine.tokenize(chat(3, 40)), params))  # a goes to the shelf
        assert engine.cached_sequences == 1 and engine.shelf.sequences == 1
        done = tokens_of(engine.generate(b, params))[1]
        assert done.usage.cached_tokens >= shared  # the system prompt came back from the shelf
    finally:
        engine.close()


def _answer(engine: Engine, prompt: list[int]) -> tuple[list[int], list[float], Finish]:
    params = SamplingParams(temperature=0, max_tokens=24, logprobs=1)
    ids: list[int] = []
    lps: list[float] = []
    finish = None
    for e in engine.generate(prompt, params, thinking=NO_GUARD):
        if isinstance(e, TokenEvent) and e.token is not None:
            ids.append(e.token)
            lps.append(e.logprobs[0].logprob or 0.0)
        elif isinstance(e, Finish):
            finish = e
    assert finish is not None
    return ids, lps, finish


def test_a_restored_prefix_decodes_as_a_computed_one(gguf_of: Callable[[str, str], Path]) -> None:
    path = gguf_of("tiny", "Q8_0")
    engine = open_batch(path, parallel=2)
    try:
        a = engine.tokenize(chat(1, 150))
        first, _, _ = _answer(engine, a)
        _answer(engine, engine.tokenize(chat(2, 150)))  # runs while a is finished: parks it
        assert engine.shelf.sequences == 1
        turn = "<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
        follow = a + first + engine.tokenize(turn)
        ids, lps, finish = _answer(engine, follow)
        assert finish.usage.cached_tokens >= len(a)  # restored from the shelf
    finally:
        engine.close()
    fresh = open_batch(path, parallel=2)
    try:
        ids_fresh, lps_fresh, finish_fresh = _answer(fresh, follow)
    finally:
        fresh.close()
    assert finish_fresh.usage.cached_tokens == 0
    assert ids == ids_fresh
    assert lps == pytest.approx(lps_fresh, abs=1e-3)


def test_a_full_cache_fails_the_newest_and_serves_the_rest(
    gguf_of: Callable[[str, str], Path],
) -> None:
    engine = open_batch(gguf_of("looping", "Q8_0"), parallel=3, n_ctx=256)
    params = SamplingParams(temperature=0, max_tokens=200)
    prompt = engine.tokenize(chat(0, 2))
    errors: list[BaseException] = []
    done: list[int] = []

    def one(i: int) -> None:
        time.sleep(0.05 * i)
        try:
            done.append(len(tokens_of(engine.generate(prompt + [i], params, thinking=NO_GUARD))[0]))
        except ContextFullError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert errors and "context is full" in errors[0].args[0]
        assert 200 in done  # the oldest ran to the end
        ids, finish = tokens_of(
            engine.generate(prompt, SamplingParams(temperature=0, max_tokens=3))
        )
        assert len(ids) == 3  # and the engine still serves
    finally:
        engine.close()


def test_eight_clients_at_once_through_the_server(gguf_of: Callable[[str, str], Path]) -> None:
    tokens = 24
    stamps: list[list[float]] = [[] for _ in range(8)]
    failures: list[str] = []

    def client(url: str, i: int, barrier: threading.Barrier) -> None:
        body = {
            "model": "m",
            "stream": True,
            "max_tokens": tokens,
            "temperature": 0,
            "loop_guard": False,
            "enable_thinking": False,
            "messages": [{"role": "user", "content": f"client {i}"}],
        }
        barrier.wait(TIMEOUT)
        try:
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT
            ) as r:
                if r.status_code != 200:
                    failures.append(f"{i}: HTTP {r.status_code}")
                for line in r.iter_lines():
                    if (
                        line.startswith("data: {")
                        and '"content":"' in line
                        and '"role"' not in line
                    ):
                        stamps[i].append(time.perf_counter())
        except httpx.HTTPError as exc:
            failures.append(f"{i}: {exc}")

    with serving(gguf_of("looping", "Q8_0"), n_ctx=4096, parallel=4) as (url, _):
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=client, args=(url, i, barrier)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    assert not failures, failures
    assert [len(s) for s in stamps] == [tokens] * 8  # everyone got a full answer
    # Decoded together: four streams are live at once, so their token times interleave.
    firsts = sorted(s[0] for s in stamps)
    lasts = sorted(s[-1] for s in stamps)
    assert firsts[3] < lasts[0], "the first four streams did not overlap"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize("parallel", [1, 2])
def test_cpu_engines_read_the_model_instead_of_mapping_it(
    parallel: int, gguf_of: Callable[[str, str], Path]
) -> None:
    path = gguf_of("tiny", "Q4_K_M")
    info = read_model_info(path)
    engine = Engine(path, make_plan(info, Settings(ctx=256, parallel=parallel)), info)
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8")
    finally:
        engine.close()
    assert str(path) not in maps  # one copy of the weights, not a mapping beside llama.cpp's


def test_a_bad_schema_fails_its_request_and_the_engine_goes_on(
    gguf_of: Callable[[str, str], Path],
) -> None:
    from edge.errors import UsageError

    engine = open_batch(gguf_of("scripted", "Q8_0"), parallel=2)
    prompt = engine.tokenize(chat(0, 2))
    try:
        bad = SamplingParams(temperature=0, json_schema={"type": "no-such-type"})
        with pytest.raises(UsageError, match="JSON schema"):
            tokens_of(engine.generate(prompt, bad))
        ids, finish = tokens_of(
            engine.generate(prompt, SamplingParams(temperature=0, max_tokens=3))
        )
        assert len(ids) == 3 and finish.reason == "length"
    finally:
        engine.close()
    with pytest.raises(EngineClosedError):
        tokens_of(engine.generate(prompt, SamplingParams(temperature=0, max_tokens=3)))


def test_a_fatal_decode_is_answered_and_the_engine_reloads(
    gguf_of: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection at the C boundary: llama_decode returns a fatal code (< -1), as it
    does when a GPU allocation fails mid-run. The request in flight gets a 503 with the
    reason, nothing more is decoded on the context in doubt, and the server loads a fresh
    engine: /health and /metrics count the restart, and the next request is answered,
    as the first was."""
    import llama_cpp

    real = llama_cpp.llama_decode
    calls = {"n": 0, "fail_at": 10**9}

    def flaky(ctx: Any, batch: Any) -> int:
        calls["n"] += 1
        return -3 if calls["n"] == calls["fail_at"] else int(real(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", flaky)
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    with serving(gguf_of("scripted", "Q8_0"), parallel=2) as (url, app):
        first = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
        assert first.is_success
        dead = app.state.runtime.worker.engine
        calls["fail_at"] = calls["n"] + 2  # the second decode of the next request
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
        assert r.status_code == 503 and "code -3" in r.json()["error"]["message"]
        assert dead.failed
        again = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
        assert again.is_success, again.text
        assert again.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
        assert app.state.runtime.worker.engine is not dead
        health = httpx.get(f"{url}/health", timeout=TIMEOUT).json()
        assert health["status"] == "ok" and health["restarts"] == 1
        assert "code -3" in health["last_restart"]
        page = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
        assert "edge_engine_restarts_total 1" in page
