"""Log-probabilities over HTTP, through a real server and the real llama.cpp, checked
against numbers computed independently with llama-cpp-python's own `Llama` (logits of
every position, softmax in the test) on a random-weight model, so that the values spread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.support.live_server import WAIT, serving
from tests.support.slow import slow_fixture

PROMPT = "The capital of France is"


@slow_fixture(scope="module")
def tiny(gguf_of: Callable[[str, str], Path]) -> Path:
    return gguf_of("tiny", "Q8_0")


@slow_fixture(scope="module")
def server(tiny: Path) -> Iterator[str]:
    with serving(tiny, parallel=2) as (url, _):
        yield url


@slow_fixture(scope="module")
def reference(tiny: Path) -> Iterator[Callable[[str, int], tuple[list[int], Any]]]:
    """`reference(prompt, n)`: the prompt's tokens plus n greedy ones, and the
    log-softmax row of every position (row i predicts token i + 1), by llama-cpp-python."""
    from llama_cpp import Llama

    llm = Llama(str(tiny), n_ctx=256, n_threads=1, logits_all=True, verbose=False)

    def run(prompt: str, n: int) -> tuple[list[int], Any]:
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        for _ in range(n):  # greedy, as the server's temperature 0
            llm.reset()
            llm.eval(tokens)
            tokens.append(int(np.argmax(llm.scores[len(tokens) - 1])))
        llm.reset()
        llm.eval(tokens)
        rows = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
        top = rows.max(axis=1, keepdims=True)
        return tokens, rows - top - np.log(np.exp(rows - top).sum(axis=1, keepdims=True))

    yield run
    llm.close()


def completion(url: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/completions", json={"temperature": 0, **body}, timeout=WAIT)
    assert r.status_code == 200, r.text
    return r.json()


def test_echoed_prompt_and_answer_logprobs_equal_llama_cpps(
    server: str, reference: Callable[[str, int], tuple[list[int], Any]]
) -> None:
    """What lm-eval's local-completions asks for a loglikelihood: echo, logprobs, one
    token; every position's logprob is the reference's, the first prompt token's null."""
    body = completion(server, prompt=PROMPT, max_tokens=3, logprobs=2, echo=True)
    lp = body["choices"][0]["logprobs"]
    tokens, rows = reference(PROMPT, 3)
    assert len(lp["token_logprobs"]) == len(tokens) == len(lp["top_logprobs"])
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    for i in range(1, len(tokens)):
        assert lp["token_logprobs"][i] == pytest.approx(rows[i - 1][tokens[i]], abs=1e-3)
        best = sorted(rows[i - 1], reverse=True)[:2]
        assert sorted(lp["top_logprobs"][i].values(), reverse=True) == pytest.approx(best, abs=1e-3)
    text = body["choices"][0]["text"]
    assert text.startswith(PROMPT) and "".join(lp["tokens"]) == text
    assert lp["text_offset"] == [sum(map(len, lp["tokens"][:i])) for i in range(len(tokens))]
    # greedy: each answer token is its position's most likely one
    for i in range(len(tokens) - 3, len(tokens)):
        assert lp["token_logprobs"][i] == pytest.approx(max(lp["top_logprobs"][i].values()))


def test_prompt_as_token_ids_is_echoed_as_text(
    server: str, reference: Callable[[str, int], tuple[list[int], Any]]
) -> None:
    tokens, _ = reference(PROMPT, 0)
    body = completion(server, prompt=tokens, max_tokens=1, echo=True)
    assert body["choices"][0]["text"].startswith(PROMPT)
    assert body["choices"][0]["logprobs"] is None
    assert completion(server, prompt=[tokens], max_tokens=1)["usage"]["prompt_tokens"] == len(
        tokens
    )
    bad = httpx.post(f"{server}/v1/completions", json={"prompt": [1, 10**9]}, timeout=WAIT)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_streamed_completion_logprobs_equal_the_folded(server: str) -> None:
    args = {"prompt": PROMPT, "max_tokens": 5, "logprobs": 3, "echo": True, "temperature": 0}
    folded = completion(server, **args)["choices"][0]
    with httpx.stream(
        "POST", f"{server}/v1/completions", json={**args, "stream": True}, timeout=WAIT
    ) as r:
        chunks = [
            json.loads(line[6:])
            for line in r.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    merged: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": []}
    merged["text_offset"] = []
    for c in chunks:
        for key, values in (c["choices"][0]["logprobs"] or {}).items():
            merged[key] += values
    assert text == folded["text"] and merged == folded["logprobs"]


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0, timeout=WAIT)


def test_chat_logprobs_streamed_equal_non_streamed(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {
        "model": "x",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0,
        "max_tokens": 6,
        "logprobs": True,
        "top_logprobs": 3,
        "extra_body": {"enable_thinking": False},
    }
    whole = client.chat.completions.create(**args)
    content = whole.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) >= 1
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.logprob == pytest.approx(tops[0])  # greedy: the most likely token
        assert entry.bytes is not None and entry.top_logprobs[0].token == entry.token
    streamed: list[Any] = []
    for chunk in client.chat.completions.create(**args, stream=True):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed += chunk.choices[0].logprobs.content
    assert [(e.token, e.logprob, e.bytes) for e in streamed] == [
        (e.token, e.logprob, e.bytes) for e in content
    ]
    plain = client.chat.completions.create(**{**args, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


def test_responses_logprobs_equal_chats_for_the_same_conversation(client: openai.OpenAI) -> None:
    """Responses' `include: ["message.output_text.logprobs"]`: the answer's logprobs on
    its output_text, streamed on the text deltas; the same numbers chat completions gives
    for the same conversation (both render one prompt, and both decode greedily)."""
    chat = client.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0,
        max_tokens=6,
        logprobs=True,
        top_logprobs=2,
        extra_body={"enable_thinking": False},
    )
    want = [(e.token, e.logprob) for e in chat.choices[0].logprobs.content]  # type: ignore[union-attr]
    args: dict[str, Any] = {
        "model": "x",
        "input": "Hi",
        "temperature": 0,
        "max_output_tokens": 6,
        "reasoning": {"effort": "none"},
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    made = client.responses.create(**args)
    part = made.output[-1].content[0]  # type: ignore[union-attr]
    got = [(lp.token, lp.logprob) for lp in part.logprobs]  # type: ignore[union-attr]
    same(got, want)
    assert all(len(lp.top_logprobs) == 2 for lp in part.logprobs)  # type: ignore[union-attr]
    deltas: list[Any] = []
    with client.responses.stream(**args) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas += event.logprobs or []
    same([(lp.token, lp.logprob) for lp in deltas], want)
    plain = client.responses.create(**{**args, "include": [], "top_logprobs": None})
    assert plain.output[-1].content[0].logprobs == []  # type: ignore[union-attr]


def same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    """The same tokens with the same logprobs (to float noise)."""
    assert [t for t, _ in got] == [t for t, _ in want] and len(want) >= 2
    assert [lp for _, lp in got] == pytest.approx([lp for _, lp in want], abs=1e-6)
