"""The seam between the engine and its callers: what they send, what comes back.

A caller builds a `Job` (prompt tokens, sampling, thinking limits) and submits it with an
`Inbox`; the engine answers with a `Ticket` and then posts the job's events to the inbox:
`TokenEvent`s, then exactly one `Finish` — or one `EdgeError` in its place. The engine
posts each step's events for every job of one inbox in a single call, so a consumer on an
event loop crosses threads once per step, not once per token per request.

Nothing here imports llama_cpp: a fake engine for tests implements `EngineAPI` alone.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge.config import QWEN3_SAMPLING
from edge.errors import EdgeError

FinishReason = Literal["stop", "length", "cancelled"]
"""Why a generation ended: the model stopped (or a stop string), a token limit or the
context cut it, or the caller cancelled it."""

_PLAIN = QWEN3_SAMPLING[False]


@dataclass
class SamplingParams:
    """Sampling settings shared by the OpenAI API and llama.cpp; by default Qwen's own for
    answers without thinking."""

    temperature: float = _PLAIN["temperature"]
    top_p: float = _PLAIN["top_p"]
    top_k: int = int(_PLAIN["top_k"])
    min_p: float = _PLAIN["min_p"]
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None  # None: a fresh seed per request
    logit_bias: dict[int, float] = field(default_factory=dict)
    max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF
    json_schema: dict[str, Any] | None = None
    # Log-probabilities, off unless asked (they cost a pass over the vocabulary a token):
    # each sampled token's, with this many most likely alternatives (0–20).
    logprobs: int | None = None
    # The prompt's tokens' too (OpenAI's `echo`): one event before the first token.
    prompt_logprobs: bool = False


@dataclass
class ThinkingControl:
    """Reasoning limits: a token budget, and the loop guard (repeated n-grams)."""

    budget: int | None = None
    loop_guard: bool = True
    loop_min_span: int = 64  # tokens a repetition must cover before it counts as a loop
    loop_max_ngram: int = 48


@dataclass(frozen=True)
class Job:
    """One generation to run: the whole prompt as tokens, and how to sample its answer.
    `in_think` says the prompt already opened a think block the answer continues."""

    prompt: list[int]
    params: SamplingParams
    thinking: ThinkingControl = field(default_factory=ThinkingControl)
    in_think: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability under the model's own distribution (the softmax of its
    logits, before any sampling setting), and the most likely tokens at its position."""

    token: int
    piece: bytes  # the token's bytes (a piece of a character, for some)
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: tuple[TokenLogprob, ...] = ()  # most likely first; their own `top` is empty


@dataclass(frozen=True)
class TokenEvent:
    """Generated text. `token` is the sampled token it came from, or None for text the
    engine added itself (a think block it closed, bytes held back until the end).
    `text` may be empty while the bytes of a character are still arriving.
    `logprobs`: the sampled token's, when the job asked; an event with no token and no
    text carries the prompt's (`prompt_logprobs`), before the first token."""

    text: str
    token: int | None
    in_think: bool
    elapsed: float  # seconds since the job was submitted
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation; `cached_tokens` of the prompt were reused from KV."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Finish:
    """The end of a generation: why, how many tokens, how fast."""

    reason: FinishReason
    usage: Usage
    ttft: float  # seconds from submission to the first token
    total: float
    notes: tuple[str, ...] = ()
    stop_sequence: str | None = None  # the stop string that ended it (reason "stop"), if one

    @property
    def decode_tps(self) -> float:
        """Generated tokens per second after the first one."""
        n = self.usage.completion_tokens - 1
        return n / (self.total - self.ttft) if n > 0 and self.total > self.ttft else 0.0


Event = TokenEvent | Finish
Item = TokenEvent | Finish | EdgeError
"""What an inbox receives for a job: events, then a Finish or an error, which ends it."""


@dataclass(frozen=True)
class Limits:
    """What a loaded engine can take."""

    n_vocab: int  # token ids run from 0 to n_vocab - 1
    n_ctx: int  # tokens of prompt plus answer one sequence may hold
    slots: int  # sequences decoded together; more jobs wait in line


@dataclass(frozen=True)
class ShelfUse:
    """Finished sequences kept out of the KV cache for prefix reuse: in RAM, and on disk."""

    sequences: int = 0
    bytes: int = 0
    peak_bytes: int = 0  # the most held at once since the engine started
    cap_bytes: int = 0
    disk_sequences: int = 0  # files of the disk tier (edge.engine.diskcache)
    disk_bytes: int = 0
    disk_cap_bytes: int = 0
    disk_hits: int = 0  # prefixes read back from disk since the engine started


class Ticket:
    """A submitted job. `cancel()` may be called from any thread, at any time: a running
    job ends at the engine's next step with reason "cancelled"; one still waiting for a
    slot ends without running, with `error` if given (e.g. the server is shutting down)."""

    __slots__ = ("job", "inbox", "cancelled", "error", "mailbox")

    def __init__(self, job: Job, inbox: Inbox) -> None:
        self.job, self.inbox = job, inbox
        self.cancelled = False
        self.error: EdgeError | None = None
        self.mailbox: Any = None  # the inbox's own per-job state, if it keeps any

    def cancel(self, error: EdgeError | None = None) -> None:
        """Stop the job (see the class docstring). Idempotent."""
        if error is not None and self.error is None:
            self.error = error
        self.cancelled = True  # one attribute store: the scheduler reads it each step


class Inbox(Protocol):
    """Where a job's items go. `post` is called on the engine's thread, once per step with
    every item of that step for this inbox's jobs, in order; it must not block."""

    def post(self, items: list[tuple[Ticket, Item]]) -> None: ...


class EngineAPI(Protocol):
    """What the CLI and the server use of an engine (the real one, or a test's fake)."""

    on_fatal: Callable[[str], None] | None
    """Called, on the engine's thread, if the engine stops on its own (a fatal llama.cpp
    error, a crashed scheduler), after its jobs have had their error: the server then
    loads a fresh engine."""

    @property
    def limits(self) -> Limits: ...

    @property
    def shelf(self) -> ShelfUse:
        """What the shelf holds now (edge.engine.shelf); read from any thread."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text`, special tokens parsed."""
        ...

    def check_prompt(self, prompt: list[int], max_tokens: int | None = None) -> None:
        """Raise a UsageError now for a prompt that cannot run (empty, or over the context
        with room for `max_tokens`)."""
        ...

    def submit(self, job: Job, inbox: Inbox) -> Ticket:
        """Queue `job`; its items go to `inbox`. Raises an EdgeError instead of queueing
        when the job cannot start at all (shutting down, a bad grammar)."""
        ...

    def close(self) -> None:
        """Stop after the current step and free the model; running jobs get an error."""
        ...


class Run:
    """One job run for a blocking thread (the CLI, tests): submitted at once; iterating
    yields its events on this thread, TokenEvents then one Finish, and raises an engine
    error. `ticket.cancel()` works from any thread; leaving the loop early (Ctrl-C,
    `break`) cancels too, which frees the slot at the engine's next step."""

    def __init__(self, engine: EngineAPI, job: Job) -> None:
        self._queue: queue.SimpleQueue[list[tuple[Ticket, Item]]] = queue.SimpleQueue()
        self.ticket = engine.submit(job, self)

    def post(self, items: list[tuple[Ticket, Item]]) -> None:
        self._queue.put(items)

    def __iter__(self) -> Iterator[Event]:
        try:
            while True:
                try:  # a timeout, so that Ctrl-C is noticed while the prompt is read
                    items = self._queue.get(timeout=0.25)
                except queue.Empty:
                    continue
                for _, item in items:
                    if isinstance(item, EdgeError):
                        raise item
                    yield item
                    if isinstance(item, Finish):
                        return
        finally:
            self.ticket.cancel()


def generate(engine: EngineAPI, job: Job) -> Iterator[Event]:
    """Run `job` on this thread, submitted when the first event is asked for (see `Run`)."""
    yield from Run(engine, job)
