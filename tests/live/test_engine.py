"""The engine through the real llama.cpp, on scripted models whose output is known in advance."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.chat.conversation import Conversation, TurnOptions
from edge.chat.reasoning import Delta
from edge.chat.template import ChatTemplate
from edge.config import Settings
from edge.engine import (
    ContextOverflowError,
    Engine,
    Finish,
    Job,
    Run,
    SamplingParams,
    ThinkingControl,
    TokenEvent,
)
from edge.engine.plan import make_plan, read_model_info
from edge.errors import UsageError
from tests.support.slow import slow_fixture

PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
GREEDY = SamplingParams(temperature=0)


def open_engine(path: Path, **plan_args: object) -> Engine:
    info = read_model_info(path)
    return Engine(path, make_plan(info, Settings(**plan_args)), info)  # type: ignore[arg-type]


def open_any(kind: str, path: Path, **plan_args: object) -> Any:
    """The engine with one slot (chat, run) or two (a server): one contract."""
    if kind == "single":
        return open_engine(path, **plan_args)
    return open_engine(path, parallel=2, **plan_args)


@slow_fixture(scope="module", params=["single", "batch"])
def scripted(request: pytest.FixtureRequest, gguf_of: Callable[[str, str], Path]) -> Iterator[Any]:
    engine = open_any(request.param, gguf_of("scripted", "Q8_0"), ctx=512)
    yield engine
    engine.close()


@slow_fixture(scope="module", params=["single", "batch"])
def looping(request: pytest.FixtureRequest, gguf_of: Callable[[str, str], Path]) -> Iterator[Any]:
    engine = open_any(request.param, gguf_of("looping", "Q8_0"), ctx=2048)
    yield engine
    engine.close()


def collect(events: Iterator[TokenEvent | Finish]) -> tuple[str, Finish]:
    text, finish = "", None
    for e in events:
        if isinstance(e, TokenEvent):
            text += e.text
        else:
            finish = e
    assert finish is not None
    return text, finish


def test_streams_tokens_then_finish(scripted: Any) -> None:
    events = list(scripted.generate(scripted.tokenize(PROMPT), GREEDY))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert [e.text for e in tokens] == [
        "<think>",
        "Let",
        " me",
        " think",
        "</think>",
        "\n\n",
        "Hello",
        " world",
    ]
    assert [e.in_think for e in tokens] == [True] * 5 + [False] * 3
    assert [e.elapsed for e in tokens] == sorted(e.elapsed for e in tokens)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert (finish.usage.completion_tokens, finish.usage.reasoning_tokens) == (8, 5)
    assert finish.ttft <= finish.total


def test_follow_up_reuses_the_kv_prefix(scripted: Any) -> None:
    first = scripted.tokenize(PROMPT)
    collect(scripted.generate(first, GREEDY))
    longer = scripted.tokenize(
        PROMPT + "Hello world<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n"
    )
    _, finish = collect(scripted.generate(longer, GREEDY))
    assert finish.usage.cached_tokens >= len(first)  # only the new turn was evaluated
    _, other = collect(
        scripted.generate(scripted.tokenize("<|im_start|>system\nX<|im_end|>\n" + PROMPT), GREEDY)
    )
    assert other.usage.cached_tokens == 1  # a different history shares only <|im_start|>


def test_max_tokens_and_stop_strings(scripted: Any) -> None:
    text, finish = collect(
        scripted.generate(scripted.tokenize(PROMPT), SamplingParams(temperature=0, max_tokens=3))
    )
    assert (text, finish.reason) == ("<think>Let me", "length")
    assert finish.stop_sequence is None
    text, finish = collect(
        scripted.generate(scripted.tokenize(PROMPT), SamplingParams(temperature=0, stop=[" thi"]))
    )
    assert (text, finish.reason) == (
        "<think>Let me",
        "stop",
    )  # the stop string itself is not emitted
    assert finish.stop_sequence == " thi"  # which one ended it, for Anthropic's stop_sequence


def test_thinking_budget_closes_the_block(scripted: Any) -> None:
    control = ThinkingControl(budget=2)
    text, finish = collect(scripted.generate(scripted.tokenize(PROMPT), GREEDY, thinking=control))
    assert text == "<think>Let\n</think>\n\nHello world"
    assert finish.reason == "stop" and finish.usage.reasoning_tokens == 2
    assert "thinking budget of 2 tokens reached" in finish.notes


def test_loop_guard_ends_runaway_thinking_and_answers(looping: Any) -> None:
    text, finish = collect(looping.generate(looping.tokenize(PROMPT), GREEDY))
    reasoning, _, answer = text.partition("</think>")
    assert reasoning.startswith("<think>Let meLet me") and reasoning.endswith("\n")
    assert answer.startswith("\n\nHello worldHello world")
    assert finish.reason == "length"
    assert finish.notes == (
        "loop guard closed a repeating think block",
        "loop guard ended a repeating answer",
    )
    assert finish.usage.completion_tokens < 400  # both loops cut after ~64 repeated tokens


def test_loop_guard_can_be_turned_off(looping: Any) -> None:
    params = SamplingParams(temperature=0, max_tokens=300)
    text, finish = collect(
        looping.generate(
            looping.tokenize(PROMPT), params, thinking=ThinkingControl(loop_guard=False)
        )
    )
    assert finish.reason == "length" and finish.notes == ()
    assert "</think>" not in text and finish.usage.completion_tokens == 300


def test_cancel_from_another_thread(looping: Any) -> None:
    seen = 0
    finish = None
    params = SamplingParams(temperature=0, max_tokens=1500)
    run = Run(looping, Job(looping.tokenize(PROMPT), params, ThinkingControl(loop_guard=False)))
    for event in run:
        if isinstance(event, Finish):
            finish = event
            break
        seen += 1
        if seen == 10:
            threading.Thread(target=run.ticket.cancel).start()
    assert finish is not None and finish.reason == "cancelled"
    assert finish.usage.completion_tokens < 100  # stopped within a few tokens of the request


def test_seeded_sampling_repeats(gguf_of: Callable[[str, str], Path]) -> None:
    engine = open_engine(gguf_of("tiny", "Q8_0"), ctx=256)
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, seed=42, max_tokens=12)
    prompt = engine.tokenize("Once upon a time")
    a, _ = collect(engine.generate(prompt, params))
    b, _ = collect(engine.generate(prompt, params))
    engine.close()
    assert a == b and len(a) > 0


def test_json_schema_constrains_output(gguf_of: Callable[[str, str], Path]) -> None:
    engine = open_engine(gguf_of("tiny", "Q8_0"), ctx=512)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    params = SamplingParams(temperature=1.0, seed=1, max_tokens=40, json_schema=schema)
    text, finish = collect(engine.generate(engine.tokenize("Answer in JSON:"), params))
    engine.close()
    assert finish.reason == "stop", text  # the grammar ends the object, then generation ends
    assert isinstance(json.loads(text)["ok"], bool)


def test_logit_bias_bans_a_token(scripted: Any) -> None:
    hello = scripted.tokenize("Hello")[0]
    params = SamplingParams(temperature=0, logit_bias={hello: float("-inf")}, max_tokens=8)
    text, _ = collect(
        scripted.generate(scripted.tokenize(PROMPT + "<think>\n\n</think>\n\n"), params)
    )
    assert "Hello" not in text


def test_greedy_fast_path_picks_what_llama_cpp_picks(
    gguf_of: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.engine import sampling, scheduler

    engine = open_engine(gguf_of("tiny", "Q8_0"), ctx=256)
    prompt = engine.tokenize("Once upon a time")
    first = Run(engine, Job(prompt, SamplingParams(temperature=0, max_tokens=1)))
    top = next(e.token for e in first if isinstance(e, TokenEvent) and e.token is not None)
    # Ban the likeliest token, favour another, and name one past the vocabulary (ignored).
    bias = {top: float("-inf"), 1000: 3.0, engine.limits.n_vocab + 5: 9.0}
    params = SamplingParams(temperature=0, max_tokens=24, logit_bias=bias)

    def tokens() -> list[int]:
        run = Run(engine, Job(prompt, params, ThinkingControl(loop_guard=False)))
        return [e.token for e in run if isinstance(e, TokenEvent) and e.token is not None]

    assert isinstance(sampling.build_sampler(engine.vocab, params), sampling.Greedy)
    fast = tokens()
    original = sampling.build_sampler
    # Where Engine.submit looks it up: patched in sampling, the engine would not see it.
    monkeypatch.setattr(scheduler, "build_sampler", lambda v, p: original(v, p, fast_greedy=False))
    slow = tokens()
    engine.close()
    assert len(fast) == 24 and top not in fast
    assert fast == slow


def test_prompt_longer_than_context(scripted: Any) -> None:
    with pytest.raises(ContextOverflowError, match="holds 512"):
        collect(scripted.generate(scripted.tokenize("word " * 600), GREEDY))
    with pytest.raises(UsageError, match="empty"):
        collect(scripted.generate([], GREEDY))


def test_conversation_splits_reasoning_and_keeps_history(
    scripted: Any, gguf_of: Callable[[str, str], Path]
) -> None:
    conv = Conversation(scripted, ChatTemplate.from_gguf(gguf_of("scripted", "Q8_0")))
    deltas = [e for e in conv.send("Hi", TurnOptions(temperature=0)) if isinstance(e, Delta)]
    assert "".join(d.text for d in deltas if d.kind == "reasoning") == "Let me think"
    assert "".join(d.text for d in deltas if d.kind == "answer") == "Hello world"
    assert conv.messages[-1] == {
        "role": "assistant",
        "content": "Hello world",
        "reasoning_content": "Let me think",
    }
    off = [
        e for e in conv.send("Again /no_think", TurnOptions(temperature=0)) if isinstance(e, Delta)
    ]
    assert {d.kind for d in off} == {"answer"} and "".join(d.text for d in off) == "Hello world"
    conv.thinking = False
    finish = [e for e in conv.send("Third", TurnOptions(temperature=0)) if isinstance(e, Finish)][0]
    assert finish.usage.reasoning_tokens == 0 and finish.usage.cached_tokens > 0


def test_a_message_over_the_context_leaves_the_conversation_usable(
    scripted: Any, gguf_of: Callable[[str, str], Path]
) -> None:
    conv = Conversation(scripted, ChatTemplate.from_gguf(gguf_of("scripted", "Q8_0")))
    with pytest.raises(ContextOverflowError, match="context holds 512"):
        list(conv.send("word " * 600))
    assert conv.messages == []  # nothing half-added
    with pytest.raises(UsageError, match="empty"):
        list(conv.send("  \n"))
    answer = "".join(
        e.text
        for e in conv.send("Hi", TurnOptions(temperature=0))
        if isinstance(e, Delta) and e.kind == "answer"
    )
    assert answer == "Hello world" and len(conv.messages) == 2


def log_softmax(rows: Any) -> Any:
    import numpy as np

    rows = np.asarray(rows, dtype=np.float64)
    top = rows.max(axis=-1, keepdims=True)
    return rows - top - np.log(np.exp(rows - top).sum(axis=-1, keepdims=True))


@slow_fixture(scope="module")
def tiny_logprobs(gguf_of: Callable[[str, str], Path]) -> Iterator[tuple[Path, Any]]:
    """A random-weight model (a real spread of probabilities), with two slots."""
    path = gguf_of("tiny", "Q8_0")
    engine = open_engine(path, ctx=256, parallel=2)
    yield path, engine
    engine.close()


def test_logprobs_equal_llama_cpps_own_logits(tiny_logprobs: tuple[Path, Any]) -> None:
    """The prompt's and the answer's logprobs, and their top alternatives, are the softmax
    of the logits llama-cpp-python's own Llama computes for the same tokens."""
    from llama_cpp import Llama

    path, engine = tiny_logprobs
    prompt = engine.tokenize(PROMPT)
    params = SamplingParams(temperature=0, max_tokens=6, logprobs=5, prompt_logprobs=True)
    events = list(Run(engine, Job(prompt, params, ThinkingControl(loop_guard=False))))
    head, tokens = events[0], [e for e in events if isinstance(e, TokenEvent) and e.token]
    assert isinstance(head, TokenEvent) and head.token is None and head.text == ""
    echo = head.logprobs
    assert [lp.token for lp in echo] == prompt and echo[0].logprob is None
    answer = [e.logprobs[0] for e in tokens]
    assert [lp.token for lp in answer] == [e.token for e in tokens] and len(answer) == 6

    llm = Llama(str(path), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    try:
        everything = prompt + [lp.token for lp in answer]
        llm.eval(everything)
        ref = log_softmax(llm.scores[: len(everything)])
    finally:
        llm.close()
    for position, lp in enumerate([*echo[1:], *answer], start=1):
        row = ref[position - 1]  # the logits after token p-1 predict token p
        assert lp.logprob == pytest.approx(row[lp.token], abs=1e-3)
        assert len(lp.top) == 5 and lp.top[0].logprob >= lp.top[-1].logprob
        assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)
        for alt in lp.top:
            assert alt.logprob == pytest.approx(row[alt.token], abs=1e-3)
        assert lp.top[-1].logprob >= sorted(row)[-5] - 1e-3  # they are the five best
    for lp in answer:  # greedy: the sampled token is the most likely one
        assert lp.top[0].token == lp.token and lp.piece == engine.vocab.shown(lp.token)


def test_prompt_logprobs_share_the_batch_with_a_running_answer(
    tiny_logprobs: tuple[Path, Any],
) -> None:
    """A long prompt read for its logprobs while another sequence generates: the rows of
    logits per decode stay within llama.cpp's limit, and both answers are whole."""
    _, engine = tiny_logprobs
    other = Run(engine, Job(engine.tokenize(PROMPT), SamplingParams(temperature=0, max_tokens=24)))
    prompt = engine.tokenize(PROMPT * 6)
    echo = SamplingParams(temperature=0, max_tokens=2, logprobs=0, prompt_logprobs=True)
    events = list(Run(engine, Job(prompt, echo, ThinkingControl(loop_guard=False))))
    rest = list(other)
    assert len(events[0].logprobs) == len(prompt)  # type: ignore[union-attr]
    assert all(lp.top == () for lp in events[0].logprobs[1:])  # type: ignore[union-attr]
    assert isinstance(rest[-1], Finish) and rest[-1].usage.completion_tokens > 0


def test_no_logprobs_unless_asked(scripted: Any) -> None:
    events = list(Run(scripted, Job(scripted.tokenize(PROMPT), GREEDY)))
    assert all(e.logprobs == () for e in events if isinstance(e, TokenEvent))


def test_the_end_tokens_logprob_is_part_of_the_answer(scripted: Any) -> None:
    """Loglikelihood harnesses read one logprob per sampled token, the last one too: the
    end-of-generation token's comes as an event with no text."""
    params = SamplingParams(temperature=0, logprobs=1)
    events = list(Run(scripted, Job(scripted.tokenize(PROMPT), params)))
    *tokens, finish = events
    assert isinstance(finish, Finish) and finish.reason == "stop"
    last = tokens[-1]
    assert last.text == "" and scripted.vocab.is_eog(last.token)  # type: ignore[union-attr]
    assert last.logprobs[0].piece == b"<|im_end|>"  # type: ignore[union-attr]
    assert all(len(e.logprobs) == 1 for e in tokens if e.token is not None)  # type: ignore[union-attr]


def test_prompt_logprobs_leave_a_row_for_a_prompt_that_ends_in_the_same_step(
    tiny_logprobs: tuple[Path, Any],
) -> None:
    """An echo prompt takes every free row of logits; a plain prompt read in the same step
    must then wait a step for its last token's row (llama.cpp aborts the whole process on
    one row too many)."""
    _, engine = tiny_logprobs
    echo = SamplingParams(temperature=0, max_tokens=2, logprobs=0, prompt_logprobs=True)
    first = Run(engine, Job(engine.tokenize(PROMPT * 4), echo, ThinkingControl(loop_guard=False)))
    words = engine.tokenize("Tell me about tomatoes and peppers.")  # one chunk, several tokens
    plain = Run(engine, Job(words, SamplingParams(temperature=0, max_tokens=2)))
    assert isinstance(list(plain)[-1], Finish) and isinstance(list(first)[-1], Finish)
