"""The inference engine: one llama.cpp model and context, generating token by token.

`Engine.generate` yields one `TokenEvent` per sampled token and ends with a `Finish`
event; the non-streaming callers fold that stream. It reuses the longest KV prefix of
the previous call, so a chat's next turn evaluates only what is new. llama-cpp-python
stays behind this module: the rest of edge-qwen sees only the small types below.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import EdgeError, InvalidModelError, OutOfMemoryError, UsageError
from edge.plan import KV_TYPES, ModelInfo, Plan, detect_budget, make_plan, read_model_info, smaller


class ContextOverflowError(UsageError):
    """The prompt does not fit in the context window."""


@dataclass
class SamplingParams:
    """Sampling settings shared by the OpenAI API and llama.cpp (None: model default)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF
    json_schema: dict[str, Any] | None = None


@dataclass
class ThinkingControl:
    """Reasoning limits: a token budget, and the loop guard (repeated n-grams)."""

    budget: int | None = None
    loop_guard: bool = True
    loop_min_span: int = 64  # tokens a repetition must cover before it counts as a loop
    loop_max_ngram: int = 48


@dataclass(frozen=True)
class TokenEvent:
    """One generated token; `text` may be empty while bytes of a character are pending."""

    text: str
    token_id: int
    in_think: bool
    elapsed: float


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

    reason: str  # "stop" | "length" | "cancelled"
    usage: Usage
    ttft: float  # seconds from the call to the first token
    total: float
    notes: tuple[str, ...] = ()

    @property
    def decode_tps(self) -> float:
        """Generated tokens per second after the first one."""
        n = self.usage.completion_tokens - 1
        return n / (self.total - self.ttft) if n > 0 and self.total > self.ttft else 0.0


Event = TokenEvent | Finish
CLOSE_THINK = "\n</think>\n\n"


class TokenText:
    """Text <-> tokens for a loaded model (`self._model`, a llama-cpp-python LlamaModel),
    shared by the single-sequence Engine and the batching one."""

    _model: Any
    _vocab: Any
    plan: Plan
    think_open: int | None
    think_close: int | None

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text`, special tokens parsed, NFC-normalized as HF's Qwen2 tokenizer does."""
        data = unicodedata.normalize("NFC", text).encode("utf-8")
        return list(self._model.tokenize(data, add_bos=False, special=True))

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (llama-cpp-python's detokenize drops tokens over 32 bytes)."""
        import llama_cpp

        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def _single_token(self, text: str) -> int | None:
        ids = self.tokenize(text)
        return ids[0] if len(ids) == 1 else None

    def is_eog(self, token: int) -> bool:
        """End of generation (`<|im_end|>`, `<|endoftext|>`)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def check_prompt(self, prompt: list[int], max_tokens: int | None = None) -> None:
        """Raise a clear error for an empty prompt, or one that leaves no room for the answer
        (with `max_tokens`, room for that many tokens)."""
        if not prompt:
            raise UsageError("The prompt is empty.", "Give some text to complete.")
        need = len(prompt) + (max_tokens or 1)
        if need > self.plan.n_ctx:
            asked = f" plus max_tokens {max_tokens}" if max_tokens else ""
            raise ContextOverflowError(
                f"The prompt is {len(prompt)} tokens{asked} but the context holds {self.plan.n_ctx}.",
                "Shorten the conversation (/reset in chat), ask for fewer tokens, or use a larger --ctx.",
            )


class Engine(TokenText):
    """A loaded model with its context; not thread-safe: one generation at a time."""

    def __init__(self, path: Path, plan: Plan | None = None, info: ModelInfo | None = None) -> None:
        self.info = info or read_model_info(Path(path))
        self.plan = plan or make_plan(self.info)
        self._llm = _load(Path(path), self.plan)
        self._model = self._llm._model
        self._vocab = self._model.vocab
        self.think_open = self._single_token("<think>")
        self.think_close = self._single_token("</think>")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the model and context."""
        self._llm.close()

    # -- generation --------------------------------------------------------------------

    def generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        thinking: ThinkingControl | None = None,
        in_think: bool = False,
    ) -> Iterator[Event]:
        """Stream the completion of `prompt`: TokenEvents, then one Finish."""
        self.check_prompt(prompt)
        with self._lock:
            yield from _Run(
                self, prompt, params, cancel, thinking or ThinkingControl(), in_think
            ).events()

    def _prefill(self, prompt: list[int], cancel: threading.Event | None = None) -> int:
        """Evaluate what is new in `prompt`, reusing the KV cache's common prefix; returns cached.

        Evaluated in n_batch pieces, checking `cancel` between them, so a long prompt can be
        abandoned part way (what was evaluated stays cached).
        """
        llm = self._llm
        keep = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        keep = min(keep, len(prompt) - 1)  # the last prompt token must be evaluated for its logits
        llm.n_tokens = keep
        step = self.plan.n_batch
        for start in range(keep, len(prompt), step):
            if cancel is not None and cancel.is_set():
                break
            llm.eval(prompt[start : start + step])
        return keep

    def forget(self) -> None:
        """Drop what the KV cache holds: the next call evaluates its whole prompt."""
        self._llm.reset()

    def _eval(self, tokens: list[int]) -> None:
        self._llm.eval(tokens)

    @property
    def n_past(self) -> int:
        """Tokens currently in the KV cache."""
        return int(self._llm.n_tokens)

    def _sampler(self, params: SamplingParams) -> Any:
        return build_sampler(self._model, params)


class TextState:
    """The text side of one generation, with no llama.cpp calls: sampled tokens in, events
    out. It decodes bytes, holds back what could start a stop string, tracks the think
    block and runs the thinking budget and loop guard. The single-sequence loop below and
    the batching scheduler (edge.batch) both drive it."""

    def __init__(
        self, text: TokenText, params: SamplingParams, thinking: ThinkingControl, in_think: bool
    ) -> None:
        self.t, self.params, self.thinking, self.in_think = text, params, thinking, in_think
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = [s for s in params.stop if s]
        self.pending = ""  # decoded text held back while it could start a stop string
        self.generated: list[int] = []
        self.section: list[int] = []  # the current think block or answer, for the loop guard
        self.reasoning = 0
        self.notes: list[str] = []
        self.start = time.perf_counter()
        self.first: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def emit(self, token: int) -> tuple[TokenEvent, bool]:
        """The event for a sampled token, and whether a stop string ended the answer."""
        if self.first is None:
            self.first = self.elapsed()
        self.generated.append(token)
        self.section.append(token)
        if token == self.t.think_open:
            self.in_think, self.section = True, [token]
        counted_in_think = self.in_think
        if token == self.t.think_close:
            self.in_think, self.section = False, []
        if counted_in_think:
            self.reasoning += 1
        text = self.pending + self.decoder.decode(self.t.token_bytes(token))
        out, self.pending, stopped = _cut_stop(text, self.stops)
        return TokenEvent(out, token, counted_in_think, self.elapsed()), stopped

    def guard(self) -> str | None:
        """'close' to end a runaway think block, 'end' to end a looping answer, None to go on."""
        t = self.thinking
        if self.in_think and t.budget is not None and self.reasoning >= t.budget:
            self.notes.append(f"thinking budget of {t.budget} tokens reached")
            return "close"
        if t.loop_guard and _loops(self.section, t.loop_max_ngram, t.loop_min_span):
            if self.in_think:
                self.notes.append("loop guard closed a repeating think block")
                return "close"
            self.notes.append("loop guard ended a repeating answer")
            return "end"
        return None

    def force_close(self) -> tuple[list[int], TokenEvent]:
        """Close the think block ourselves: the tokens to evaluate, and the event to show."""
        self.in_think, self.section = False, []
        text = self.pending + self.decoder.decode(CLOSE_THINK.encode())
        self.pending = ""
        return self.t.tokenize(CLOSE_THINK), TokenEvent(text, -1, False, self.elapsed())

    def finish(self, reason: str, prompt_tokens: int, cached: int) -> list[Event]:
        """The held-back tail (if any) and the Finish event."""
        out: list[Event] = []
        tail = self.pending + self.decoder.decode(b"", final=True)
        self.pending = ""
        if tail:
            out.append(TokenEvent(tail, -1, self.in_think, self.elapsed()))
        usage = Usage(prompt_tokens, cached, len(self.generated), self.reasoning)
        total = self.elapsed()
        first = self.first if self.first is not None else total
        out.append(Finish(reason, usage, first, total, tuple(self.notes)))
        return out


class _Run:
    """One generation on the single-sequence Engine: prefill, then sample and evaluate."""

    def __init__(
        self, engine: Engine, prompt: list[int], params: SamplingParams,
        cancel: threading.Event | None, thinking: ThinkingControl, in_think: bool,
    ) -> None:  # fmt: skip
        self.e, self.prompt, self.params, self.cancel = engine, prompt, params, cancel
        self.text = TextState(engine, params, thinking, in_think)

    def events(self) -> Iterator[Event]:
        cached = self.e._prefill(self.prompt, self.cancel)
        sampler = self.e._sampler(self.params)
        try:
            yield from self._tokens(sampler, cached)
        finally:
            # llama-cpp-python's sampler sits in a reference cycle: left to the garbage
            # collector, each one's llama.cpp buffers (~1 MiB) outlive the request.
            sampler.close()

    def _tokens(self, sampler: Any, cached: int) -> Iterator[Event]:
        limit = self.params.max_tokens if self.params.max_tokens is not None else self.e.plan.n_ctx
        text = self.text
        reason = "length"
        while len(text.generated) < limit:
            if self.cancel is not None and self.cancel.is_set():
                reason = "cancelled"
                break
            if self.e.n_past >= self.e.plan.n_ctx:
                text.notes.append("context full")
                break
            token = sampler.sample(self.e._llm._ctx, -1)
            if self.e.is_eog(token):
                reason = "stop"
                break
            event, stopped = text.emit(token)
            yield event
            if stopped:
                reason = "stop"
                break
            self.e._eval([token])
            forced = text.guard()
            if forced == "end":
                reason = "length"
                break
            if forced:
                tokens, event = text.force_close()
                self.e._eval(tokens)
                yield event
        yield from text.finish(reason, len(self.prompt), cached)


def _cut_stop(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split `text` into (emit now, hold back, stopped) for the given stop strings."""
    if not stops:
        return text, "", False
    hits = [text.find(s) for s in stops if s in text]
    if hits:
        return text[: min(hits)], "", True
    hold = 0
    for s in stops:  # keep any tail that could be the start of a stop string
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold], text[len(text) - hold :], False


def _loops(tokens: list[int], max_ngram: int, min_span: int) -> bool:
    """True when the tail of `tokens` is one n-gram repeated over at least `min_span` tokens."""
    if len(tokens) < min_span or len(tokens) % 4:  # checked every 4th token: cheap enough
        return False
    for n in range(1, max_ngram + 1):
        reps = max(3, -(-min_span // n))
        span = n * reps
        if span > len(tokens):
            break
        tail = tokens[-span:]
        unit = tail[:n]
        if all(tail[i : i + n] == unit for i in range(n, span, n)):
            return True
    return False


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@contextlib.contextmanager
def loading(path: Path) -> Iterator[None]:
    """llama.cpp's load failures as one error quoting llama.cpp's own reason: an
    OutOfMemoryError when a buffer could not be allocated, else an InvalidModelError."""
    from edge.llama_log import captured_llama_log, last_error

    with captured_llama_log() as lines:
        try:
            yield
        except (ValueError, RuntimeError) as exc:
            short = next((line.strip() for line in lines if _OUT_OF_MEMORY.search(line)), None)
            if short:
                raise OutOfMemoryError(
                    f"llama.cpp ran out of memory loading {path.name}: {short}",
                    "Close programs that use the GPU or RAM, or ask for less: --ctx, --gpu-layers.",
                ) from None
            raise InvalidModelError(
                f"llama.cpp could not load {path}: {last_error(lines) or exc}",
                "The file may be damaged: `edge-qwen models --verify`, then re-pull it.",
            ) from None


# llama.cpp's words for a failed allocation: of a CPU or CUDA buffer, the KV cache, a
# cudaMalloc, a model buffer ("unable to allocate CUDA0 buffer").
_OUT_OF_MEMORY = re.compile(r"(failed|unable) to allocate|out of memory|cudaMalloc failed", re.I)
MAX_LOAD_TRIES = 6

E = TypeVar("E")  # Engine or BatchEngine: both are made from (path, plan, info)


def open_engine(
    kind: Callable[[Path, Plan, ModelInfo], E],
    path: Path,
    plan: Plan,
    info: ModelInfo,
    say: Callable[[str], None],
) -> E:
    """Load with `plan`; when llama.cpp runs out of memory (another program took the VRAM
    or RAM since the plan was made), re-plan smaller and try again, saying so each time."""
    for _ in range(MAX_LOAD_TRIES):
        try:
            return kind(path, plan, info)
        except OutOfMemoryError as exc:
            nxt = smaller(info, plan, detect_budget(plan.n_gpu_layers > 0))
            if nxt is None:
                raise
            say(f"{exc.message}. Retrying: {nxt.describe(info)}")
            plan = nxt
    raise OutOfMemoryError(
        f"{info.name} did not fit in {MAX_LOAD_TRIES} tries.", "Pass a smaller --ctx."
    )


@contextlib.contextmanager
def _outputs_capped(n: int) -> Iterator[None]:
    """Make llama-cpp-python's Llama() ask for `n` logits rows per decode.

    Llama() has no parameter for n_outputs_max and fills its context parameters from
    llama_context_default_params() inside __init__; the default reserves logits for n_batch
    rows (280 MiB of compute buffer for Qwen3's vocabulary) where we read one.
    """
    import llama_cpp.llama as llama_module

    defaults = llama_module.llama_cpp.llama_context_default_params

    def capped() -> Any:
        params = defaults()
        params.n_outputs_max = n
        return params

    with _OUTPUTS_LOCK:
        llama_module.llama_cpp.llama_context_default_params = capped
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_context_default_params = defaults


_OUTPUTS_LOCK = threading.Lock()


def _load(path: Path, plan: Plan) -> Any:
    """Open the model with every setting chosen by the plan, not llama-cpp-python's defaults."""
    from llama_cpp import Llama

    type_id = KV_TYPES[plan.kv_type][0]
    with loading(path), _outputs_capped(plan.n_outputs_max):
        return Llama(
            str(path),
            n_ctx=plan.n_ctx,
            n_batch=plan.n_batch,
            n_threads=plan.n_threads,
            n_threads_batch=plan.n_threads_batch,
            n_gpu_layers=plan.n_gpu_layers,
            flash_attn=plan.flash_attn,
            type_k=type_id,
            type_v=type_id,
            use_mmap=plan.use_mmap,
            use_mlock=plan.use_mlock,
            logits_all=False,  # its default keeps n_ctx × 151,936 floats we never read
            verbose=False,
        )


def build_sampler(model: Any, p: SamplingParams) -> Any:
    """llama.cpp's own sampler chain, in llama-server's order; greedy when temperature is 0.
    `model` is llama-cpp-python's LlamaModel."""
    from llama_cpp import LlamaGrammar
    from llama_cpp._internals import LlamaSampler

    s = LlamaSampler()
    if p.logit_bias:
        s.add_logit_bias(model.n_vocab(), p.logit_bias)
    if p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
        s.add_penalties(
            model.n_vocab(), 64, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
        )
    grammar = p.grammar
    if grammar is None and p.json_schema is not None:
        grammar = _schema_grammar(p.json_schema)
    if grammar is not None:
        s.add_grammar(model, LlamaGrammar.from_string(grammar, verbose=False))
    if p.temperature <= 0:
        s.add_greedy()
        return s
    if p.top_k > 0:
        s.add_top_k(p.top_k)
    s.add_top_p(p.top_p, 1)
    s.add_min_p(p.min_p, 1)
    s.add_temp(p.temperature)
    s.add_dist(p.seed if p.seed is not None else int(time.time_ns() & 0xFFFFFFFF))
    return s


def _schema_grammar(schema: dict[str, Any]) -> str:
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare exceptions on unsupported schemas
        raise UsageError(f"The JSON schema cannot be turned into a grammar: {exc}") from None


__all__ = [
    "ContextOverflowError",
    "EdgeError",
    "Engine",
    "TextState",
    "TokenText",
    "Event",
    "Finish",
    "SamplingParams",
    "ThinkingControl",
    "TokenEvent",
    "Usage",
]
