"""Continuous batching: up to N generations decoded together, one llama.cpp batch a step.

A scheduler thread owns the llama.cpp context. Each step it admits waiting requests into
free slots, then builds one batch: the last sampled token of every generating sequence,
plus prompt chunks of the sequences still reading their prompt (within n_batch tokens a
step, so a long prompt never freezes the others). After the decode it samples every
sequence whose logits came out, and retires the finished and the cancelled at once.

The KV cache is unified: all sequences share its cells, and a cell may belong to several
sequences. A new request whose prompt shares a prefix with a live or recently finished
sequence (the next turn of a conversation, the same system prompt) gets that prefix by
`seq_cp`, which only tags the cells: nothing is recomputed or copied. Finished sequences
stay cached until their slot is needed (least recently used first) or the cache is full.

`BatchEngine.generate` has the same contract as `Engine.generate`, so the server's worker
only has to run several of them at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.engine import (
    Event,
    SamplingParams,
    TextState,
    ThinkingControl,
    TokenText,
    build_sampler,
    common_prefix,
    loading,
)
from edge.errors import EdgeError, OutOfMemoryError
from edge.plan import KV_TYPES, ModelInfo, Plan, make_plan, read_model_info

_DONE = object()


class ContextFullError(EdgeError):
    """The shared KV cache has no room left for a running generation (HTTP 503)."""


class EngineClosedError(EdgeError):
    """The engine is shutting down or its scheduler has stopped (HTTP 503)."""


def shutting_down() -> EngineClosedError:
    """What a request gets once the server has begun to stop."""
    return EngineClosedError("The server is shutting down.", "Retry when it is back.")


class EngineFailedError(EngineClosedError):
    """llama.cpp failed a decode fatally (e.g. a GPU allocation): the context is not to be
    trusted any more, so the engine stops for good."""


@dataclass
class _Request:
    prompt: list[int]
    params: SamplingParams
    state: TextState
    sampler: Any
    cancel: threading.Event
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)


@dataclass
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV cells hold
    req: _Request | None = None
    state: TextState | None = None
    sampler: Any = None
    feed: list[int] = field(default_factory=list)  # tokens still to evaluate
    want_logits: bool = False  # sample after the last token of `feed` is evaluated
    cached: int = 0
    last_used: float = 0.0
    admitted: int = 0  # admission order, for choosing whom to drop when the cache is full

    @property
    def busy(self) -> bool:
        return self.req is not None


class BatchEngine(TokenText):
    """A model served to several generations at once (see the module docstring)."""

    def __init__(self, path: Path, plan: Plan | None = None, info: ModelInfo | None = None) -> None:
        self.info = info or read_model_info(Path(path))
        self.plan = plan or make_plan(self.info)
        self.parallel = self.plan.n_parallel
        self._model, self._ctx = _load(Path(path), self.plan)
        self._vocab = self._model.vocab
        self.think_open = self._single_token("<think>")
        self.think_close = self._single_token("</think>")
        self._slots = [_Slot(seq=i) for i in range(self.parallel)]
        self._waiting: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self.failed: str | None = None  # why the engine stopped on its own
        # Called (on the scheduler thread) when it does: the server stops rather than stay
        # up with a model that cannot decode; a restart plans from what is free then.
        self.on_fatal: Callable[[str], None] | None = None
        self._admissions = 0
        self._batch = _Batch(self.plan.n_batch)
        self._thread = threading.Thread(target=self._loop, name="edge-batch", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or a limit
            self._free()
            raise OutOfMemoryError(f"Could not start the scheduler thread ({exc}).") from None

    # -- public ------------------------------------------------------------------------

    def generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        thinking: ThinkingControl | None = None,
        in_think: bool = False,
    ) -> Iterator[Event]:
        """Stream the completion of `prompt` (TokenEvents, then one Finish), decoded in a
        batch with whatever else is running. Closing the iterator cancels it."""
        if self._closing:  # checked again below, under the lock, before queueing
            raise shutting_down()
        self.check_prompt(prompt)
        # Built here, on the caller's thread: a bad grammar or schema fails this request
        # with its own error, and compiling one never stalls the other streams.
        state = TextState(self, params, thinking or ThinkingControl(), in_think)
        req = _Request(prompt, params, state, build_sampler(self._model, params),
                       cancel or threading.Event())  # fmt: skip
        with self._wake:
            if self._closing:
                req.sampler.close()
                raise shutting_down()
            self._waiting.append(req)
            self._wake.notify()
        try:
            while True:
                try:
                    item = req.out.get(timeout=1.0)
                except queue.Empty:
                    if not self._thread.is_alive():  # never wait on a scheduler that is gone
                        raise EngineClosedError("The batch scheduler stopped.", None) from None
                    continue
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            req.cancel.set()  # a consumer that leaves early frees the slot at the next step

    def close(self) -> None:
        """Stop the scheduler (after the current step) and free the model."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=60)
        if self._thread.is_alive():  # still inside a decode: freeing now would pull the
            return  # context from under it; the process is ending anyway
        self._free()

    def _free(self) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self._batch.raw)
        self._ctx.close()
        self._model.close()

    @property
    def waiting(self) -> int:
        """Requests queued for a free slot."""
        return len(self._waiting)

    @property
    def cached_sequences(self) -> int:
        """Slots holding a finished sequence's KV, ready for prefix reuse."""
        return sum(1 for s in self._slots if not s.busy and s.tokens)

    # -- the scheduler thread -----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not self._waiting and not self._active():
                    self._wake.wait()
                if self._closing:
                    break
                self._admit()
            try:
                self._step()
            except EngineFailedError as exc:
                self.failed = exc.message
                with self._wake:
                    self._closing = True
                for slot in self._active():
                    self._retire(slot, exc)
                break
            except Exception as exc:  # llama.cpp failed the step: every live sequence's KV
                for slot in self._active():  # is in doubt, so each fails and is forgotten
                    self._forget(slot)
                    self._retire(slot, exc)
        closing = shutting_down()
        for slot in self._active():
            self._retire(slot, closing)
        with self._wake:
            while self._waiting:
                req = self._waiting.popleft()
                req.sampler.close()
                req.out.put(closing)
                req.out.put(_DONE)
        if self.failed is not None and self.on_fatal is not None:
            self.on_fatal(self.failed)

    def _active(self) -> list[_Slot]:
        return [s for s in self._slots if s.busy]

    def _admit(self) -> None:
        """Move waiting requests into free slots (caller holds the condition)."""
        while self._waiting:
            free = [s for s in self._slots if not s.busy]
            if not free:
                return
            req = self._waiting.popleft()
            if req.cancel.is_set():
                req.sampler.close()
                for event in req.state.finish("cancelled", len(req.prompt), 0):
                    req.out.put(event)
                req.out.put(_DONE)
                continue
            slot = self._place(req, free)
            try:
                self._start(slot, req)
            except Exception as exc:  # this request fails; the slot is emptied for others
                self._forget(slot)
                self._retire(slot, exc)

    def _place(self, req: _Request, free: list[_Slot]) -> _Slot:
        """A slot whose cached sequence is mostly a prefix of the prompt (the next turn of
        its conversation, or the same prompt again) goes on in place; otherwise the least
        recently used slot, an empty one first, so that other cached conversations survive.
        Any shared prefix is then copied from whichever slot holds the longest one."""
        shared = {s.seq: common_prefix(s.tokens, req.prompt) for s in free}
        best = max(free, key=lambda s: shared[s.seq])
        if best.tokens and 2 * shared[best.seq] >= len(best.tokens):
            return best
        return min(free, key=lambda s: (bool(s.tokens), s.last_used))

    def _start(self, slot: _Slot, req: _Request) -> None:
        common = {s.seq: common_prefix(s.tokens, req.prompt) for s in self._slots}
        donor = max(self._slots, key=lambda s: common[s.seq])
        # The last prompt token must be evaluated for its logits.
        keep = min(common[slot.seq], len(req.prompt) - 1)
        shared = min(common[donor.seq], len(req.prompt) - 1)
        mem = self._memory()
        import llama_cpp

        if donor is not slot and shared > keep:
            llama_cpp.llama_memory_seq_rm(mem, slot.seq, 0, -1)
            llama_cpp.llama_memory_seq_cp(mem, donor.seq, slot.seq, 0, shared)
            keep = shared
        else:
            llama_cpp.llama_memory_seq_rm(mem, slot.seq, keep, -1)
        self._admissions += 1
        slot.req, slot.tokens, slot.cached, slot.admitted = (
            req,
            req.prompt[:keep],
            keep,
            self._admissions,
        )
        slot.feed, slot.want_logits = list(req.prompt[keep:]), True
        slot.state, slot.sampler = req.state, req.sampler

    def _step(self) -> None:
        for slot in self._active():
            if slot.req is not None and slot.req.cancel.is_set():
                self._retire(slot, "cancelled")
        live = self._active()
        if not live:
            return
        plan = self._fill(live, prompts=True)
        try:
            self._decode()
        except ContextFullError as exc:
            # No room: first leave the prompt chunks for a later step and decode only the
            # generating sequences; if even that does not fit, the newest one gives way.
            plan = self._fill(live, prompts=False)
            try:
                if not plan:
                    raise exc
                self._decode()
            except ContextFullError as again:
                victim = max(live, key=lambda s: s.admitted)
                self._forget(victim)
                self._retire(victim, again)
                return
        for slot, taken, _ in plan:  # evaluated: the KV cache now holds these tokens
            slot.tokens.extend(taken)
            del slot.feed[: len(taken)]
        for slot, _, output in plan:
            if output is None:
                continue
            try:
                self._sample(slot, output)
            except Exception as exc:  # one sequence's failure is not the others'
                self._forget(slot)
                self._retire(slot, exc)

    def _fill(self, live: list[_Slot], prompts: bool) -> list[tuple[_Slot, list[int], int | None]]:
        """Fill the batch: generating sequences first (one token each), then, with
        `prompts`, prompt chunks in the room left, oldest first.
        Returns (slot, tokens taken, logits index or None)."""
        batch, budget = self._batch, self.plan.n_batch
        batch.clear()
        plan: list[tuple[_Slot, list[int], int | None]] = []
        for slot in sorted(live, key=lambda s: (len(s.feed) > 1, s.admitted)):
            if len(slot.feed) > 1 and not prompts:
                break
            take = slot.feed[:budget]
            if not take:
                continue
            whole = len(take) == len(slot.feed)
            for i, token in enumerate(take):
                batch.add(token, len(slot.tokens) + i, slot.seq, whole and i == len(take) - 1)
            plan.append((slot, take, batch.n - 1 if whole else None))
            budget -= len(take)
        return plan

    def _decode(self) -> None:
        import llama_cpp

        while True:
            rc = llama_cpp.llama_decode(self._ctx.ctx, self._batch.raw)
            if rc == 0:
                return
            if rc < -1:  # fatal: what was decoded of the batch stays, half-done
                raise EngineFailedError(
                    f"llama.cpp failed to decode a batch (code {rc}); the engine stopped.",
                    "Retry in a moment: the server restarts with a plan for the memory free then.",
                )
            if rc != 1:
                raise EdgeError(f"llama.cpp failed to decode a batch (code {rc}).")
            # No room in the KV cache (llama.cpp has undone the batch): drop a finished
            # sequence kept for reuse and try again; with none left, give up.
            idle = [s for s in self._slots if not s.busy and s.tokens]
            if not idle:
                raise ContextFullError(
                    "The server's context is full with the conversations it is serving.",
                    "Retry in a moment, or start the server with a larger --ctx.",
                )
            self._forget(min(idle, key=lambda s: s.last_used))

    def _forget(self, slot: _Slot) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq, 0, -1)
        slot.tokens = []

    def _sample(self, slot: _Slot, index: int) -> None:
        """One turn of the single-sequence loop in edge.engine, with its checks in the same
        order, so a sequence's events follow the same rules batched or alone."""
        req, state = slot.req, slot.state
        assert req is not None and state is not None
        limit = req.params.max_tokens if req.params.max_tokens is not None else self.plan.n_ctx
        if len(state.generated) >= limit:
            self._retire(slot, "length")
            return
        if len(slot.tokens) >= self.plan.n_ctx:
            state.notes.append("context full")
            self._retire(slot, "length")
            return
        token = slot.sampler.sample(self._ctx, index)
        if self.is_eog(token):
            self._retire(slot, "stop")
            return
        event, stopped = state.emit(token)
        req.out.put(event)
        if stopped:
            self._retire(slot, "stop")
            return
        forced = state.guard()
        if forced == "end":
            self._retire(slot, "length")
            return
        slot.feed = [token]
        if forced:
            close, event = state.force_close()
            if len(slot.tokens) + 1 + len(close) > self.plan.n_ctx:
                state.notes.append("context full")
                self._retire(slot, "length")
                return
            slot.feed.extend(close)
            req.out.put(event)

    def _retire(self, slot: _Slot, outcome: str | BaseException) -> None:
        """End the slot's generation; its KV stays cached for the next request's prefix."""
        req, state = slot.req, slot.state
        slot.req, slot.state, slot.sampler, slot.feed = None, None, None, []
        slot.last_used = time.monotonic()
        if req is None or state is None:
            return
        # Freed now: LlamaSampler sits in a reference cycle, so it would wait for Python's
        # cyclic GC, holding ~1 MiB of llama.cpp buffers each (the soak saw RSS climb 18%).
        req.sampler.close()
        if isinstance(outcome, BaseException):
            req.out.put(outcome)
        else:
            for event in state.finish(outcome, len(req.prompt), slot.cached):
                req.out.put(event)
        req.out.put(_DONE)

    def _memory(self) -> Any:
        import llama_cpp

        return llama_cpp.llama_get_memory(self._ctx.ctx)


class _Batch:
    """A reusable llama_batch of up to `size` tokens, one sequence id each."""

    def __init__(self, size: int) -> None:
        import llama_cpp

        self.raw = llama_cpp.llama_batch_init(size, 0, 1)
        self.size = size
        self.n = 0

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> None:
        i = self.n
        self.raw.token[i] = token
        self.raw.pos[i] = pos
        self.raw.n_seq_id[i] = 1
        self.raw.seq_id[i][0] = seq
        self.raw.logits[i] = logits
        self.n += 1
        self.raw.n_tokens = self.n


def _load(path: Path, plan: Plan) -> tuple[Any, Any]:
    """The model and a context with one sequence id per slot and a unified KV cache."""
    import llama_cpp
    from llama_cpp._internals import LlamaContext, LlamaModel

    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = plan.n_gpu_layers
    # ctypes accepts any attribute name silently, so only fields of this release are set.
    mp.load_mode = {
        (False, False): llama_cpp.LLAMA_LOAD_MODE_NONE,
        (True, False): llama_cpp.LLAMA_LOAD_MODE_MMAP,
        (False, True): llama_cpp.LLAMA_LOAD_MODE_MLOCK,
        (True, True): llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK,
    }[(plan.use_mmap, plan.use_mlock)]
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = plan.n_ctx, plan.n_batch, plan.n_batch
    cp.n_seq_max, cp.kv_unified = plan.n_parallel, True
    cp.n_outputs_max = plan.n_outputs_max  # logits of one token per sequence, not n_batch
    cp.n_threads, cp.n_threads_batch = plan.n_threads, plan.n_threads_batch
    cp.flash_attn_type = 1 if plan.flash_attn else 0
    cp.type_k = cp.type_v = KV_TYPES[plan.kv_type][0]
    cp.no_perf = True
    with loading(path):
        model = LlamaModel(path_model=str(path), params=mp, verbose=False)
        return model, LlamaContext(model=model, params=cp, verbose=False)
