"""The engine: one llama.cpp model and context, decoding every running job in one batch.

One scheduler thread owns the context. Each step it admits waiting jobs into free slots,
then builds one llama_batch: the last sampled token of every generating sequence, plus
prompt chunks of the sequences still reading their prompt (within n_batch tokens a step,
so a long prompt never freezes the others). After the decode it samples every sequence
whose logits came out, retires the finished and the cancelled, and hands the step's
events to each inbox in one call. The CLI runs the same engine with one slot.

The KV cache is unified: all sequences share its cells, and a cell may belong to several
sequences. A job whose prompt shares a prefix with a live or recently finished sequence
(the next turn of a conversation, the same system prompt) gets that prefix by `seq_cp`,
which only tags the cells: nothing is recomputed or copied. A finished sequence stays in
the cache only while nothing runs: once a job runs, finished sequences are parked on the
shelf (`edge.engine.shelf`, host RAM) so that the live ones never compute attention over
their cells, and a later prompt that starts with one gets its cells back from there.
Long sequences are also written to disk (`edge.engine.diskcache`) as they are parked and
when the engine closes; a job whose prompt starts with a file's tokens waits, without
holding a slot, while that file is read, then gets its cells back like a parked one.

llama.h is reached through `edge.engine.llama`: the library, the vocabulary, the batch,
the model and its context. Each job's way of choosing tokens (greedy, a sampler chain, a
grammar) is built by `edge.engine.sampling`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.engine.diskcache import DISK_MIN, DiskCache, Fetch
from edge.engine.llama import Vocab, _Batch, _bytes_ptr, _llama, _load, llama_cpp_version
from edge.engine.logprobs import LogprobReader
from edge.engine.plan import (
    ModelInfo,
    Plan,
    make_plan,
    read_model_info,
)
from edge.engine.sampling import Greedy, build_sampler, free_sampler
from edge.engine.seam import (
    Event,
    Inbox,
    Item,
    Job,
    Limits,
    SamplingParams,
    ShelfUse,
    ThinkingControl,
    Ticket,
    TokenEvent,
    TokenLogprob,
    generate,
)
from edge.engine.shelf import Parked, Shelf
from edge.engine.text import TextState, common_prefix
from edge.errors import (
    ContextFullError,
    ContextOverflowError,
    EdgeError,
    EngineClosedError,
    EngineFailedError,
    OutOfMemoryError,
    UsageError,
    shutting_down,
)

log = logging.getLogger(__name__)

# Shorter finished sequences are dropped rather than parked: reading them again costs less
# than a look through the shelf is worth.
PARK_MIN = 32
# A parked prefix is restored when it saves at least this many tokens of prefill (and at
# least 1/64 of its own length: the restore copies all of it).
RESTORE_GAIN = 16
# A prompt that shares all of a finished job's prompt but up to this many last tokens (and
# at most half of it) goes on from that conversation (the next turn, a regenerate): the
# template renders the end of a generation prompt (Qwen3's empty think block, 4 tokens)
# differently once the turn is history. Nothing of the old sequence is then worth parking.
CONTINUE_SLACK = 8
# How long a new job waits for the disk tier to open (the model file's first fingerprint)
# before it starts without it; and how long closing waits for the disk writes.
DISK_OPEN_WAIT_S, DISK_CLOSE_WAIT_S = 10.0, 60.0


@dataclass
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV cells hold
    ticket: Ticket | None = None
    state: TextState | None = None
    sampler: Any = None  # a llama_sampler chain, owned while the job runs
    feed: list[int] = field(default_factory=list)  # tokens still to evaluate
    cached: int = 0
    prompt_len: int = 0  # the prompt of the job that filled `tokens`
    last_used: float = 0.0
    admitted: int = 0  # admission order, for choosing whom to drop when the cache is full
    echo: list[TokenLogprob] | None = None  # the prompt's logprobs while they are read
    fetched: Parked | None = None  # the job's prefix as read from disk, until `_start`


@dataclass
class _Waiting:
    ticket: Ticket
    state: TextState
    sampler: Any
    since: float = field(default_factory=time.monotonic)
    looked: bool = False  # the disk tier was asked for its prefix
    fetch: Fetch | None = None  # its prefix being read from disk


class Engine:
    """A loaded model serving jobs through one scheduler thread (see the module docstring).
    Implements `edge.engine.seam.EngineAPI`."""

    def __init__(self, path: Path, plan: Plan | None = None, info: ModelInfo | None = None) -> None:
        self.info = info or read_model_info(Path(path))
        self.plan = plan or make_plan(self.info)
        self._lib = _llama()
        self._model, self._ctx = _load(Path(path), self.plan)
        self.vocab = Vocab(self._model)
        self.limits = Limits(self.vocab.n_vocab, self.plan.n_ctx, self.plan.n_parallel)
        self._mem = self._lib.llama_get_memory(self._ctx)
        self._slots = [_Slot(seq=i) for i in range(self.plan.n_parallel)]
        self._shelf = Shelf(self.plan.shelf_bytes)  # the scheduler thread's alone
        self._waiting: deque[_Waiting] = deque()
        self._wake = threading.Condition()
        self._disk = self._open_disk(Path(path))  # its thread pokes `_wake`: made after it
        self._closing = False
        self._freed = False
        self._forget_idle = False  # asked by forget(), done by the scheduler
        self.failed: str | None = None  # why the engine stopped on its own
        # Called (on the scheduler thread) when it does: the server reloads the engine
        # rather than stay up with a model that cannot decode (open_engine plans afresh).
        self.on_fatal: Callable[[str], None] | None = None
        self._admissions = 0
        self._out: list[tuple[Ticket, Item]] = []  # this step's items, posted at its end
        self._batch = _Batch(self.plan.n_batch)
        self._logprobs = LogprobReader(self.vocab.n_vocab, self.vocab.shown)
        self._echo_rows: list[tuple[_Slot, int, int]] = []  # (slot, batch index, rows)
        self._thread = threading.Thread(target=self._run, name="edge-engine", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or a limit
            self._free()
            raise OutOfMemoryError(f"Could not start the scheduler thread ({exc}).") from None

    # -- the seam ------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text`, special tokens parsed, NFC-normalized as HF's Qwen2 tokenizer does."""
        return self.vocab.tokenize(text)

    def check_prompt(self, prompt: list[int], max_tokens: int | None = None) -> None:
        """Raise a clear error for an empty prompt, or one that leaves no room for the answer
        (with `max_tokens`, room for that many tokens)."""
        if not prompt:
            raise UsageError("The prompt is empty.", "Give some text to complete.")
        need = len(prompt) + (max_tokens or 1)
        if need > self.plan.n_ctx:
            asked = f" plus max_tokens {max_tokens}" if max_tokens else ""
            raise ContextOverflowError(
                f"The prompt is {len(prompt)} tokens{asked} "
                f"but the context holds {self.plan.n_ctx}.",
                self._overflow_hint(bool(max_tokens)),
            )

    def _overflow_hint(self, asked: bool) -> str:
        """Advice that can be followed: a larger --ctx only while the model reads more."""
        shorten = "Shorten the conversation (/reset in chat)"
        fewer = ", ask for fewer tokens" if asked else ""
        most = self.info.ctx_train
        if self.plan.n_ctx < most:
            return f"{shorten}{fewer}, or use a larger --ctx (up to {most})."
        return f"{shorten}{fewer}: {most} tokens is the most this model reads."

    def submit(self, job: Job, inbox: Inbox) -> Ticket:
        """Queue `job`; its events go to `inbox`. The sampler (and a grammar, which may take
        a while to compile) is built here, on the caller's thread: a bad grammar fails this
        job alone, and compiling one never stalls the other streams."""
        if self._closing:  # checked again below, under the lock, before queueing
            raise self._closed_error()
        self.check_prompt(job.prompt)
        state = TextState(self.vocab, job)
        waiting = _Waiting(Ticket(job, inbox), state, build_sampler(self.vocab, job.params))
        with self._wake:
            if self._closing:
                free_sampler(waiting.sampler)
                raise self._closed_error()
            self._waiting.append(waiting)
            self._wake.notify()
        return waiting.ticket

    def _closed_error(self) -> EngineClosedError:
        """Why a job cannot be taken any more: the engine failed, or it is closing."""
        if self.failed:
            return EngineClosedError(self.failed, "Retry in a moment.")
        return shutting_down()

    def generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        *,
        thinking: ThinkingControl | None = None,
        in_think: bool = False,
    ) -> Iterator[Event]:
        """Run one job on this thread (`edge.engine.seam.generate`)."""
        return generate(self, Job(prompt, params, thinking or ThinkingControl(), in_think))

    def close(self) -> None:
        """Stop the scheduler (after the current step) and free the model (once: a second
        call does nothing)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=60)
        if self._thread.is_alive():  # still inside a decode: freeing now would pull the
            return  # context from under it; the process is ending anyway
        with self._wake:
            if self._freed:
                return
            self._freed = True
        self._free()
        if self._disk is not None:
            self._disk.close(DISK_CLOSE_WAIT_S)

    def forget(self) -> None:
        """Drop the finished sequences kept for prefix reuse, so that the next job reads
        its whole prompt (measurements of a cold start use it)."""
        with self._wake:
            self._forget_idle = True
            self._wake.notify()
        if self._disk is not None:
            self._disk.forget()

    @property
    def waiting(self) -> int:
        """Jobs queued for a free slot."""
        return len(self._waiting)

    @property
    def cached_sequences(self) -> int:
        """Slots holding a finished sequence's KV, ready for prefix reuse."""
        return sum(1 for s in self._slots if s.ticket is None and s.tokens)

    @property
    def shelf(self) -> ShelfUse:
        """What the shelf and the disk tier hold now (a snapshot; other threads change it)."""
        s, d = self._shelf, self._disk
        files, held = d.usage() if d else (0, 0)
        disk = {"disk_sequences": files, "disk_bytes": held, "disk_cap_bytes": d.cap if d else 0}
        return ShelfUse(len(s), s.bytes, s.peak, s.cap, **disk, disk_hits=d.hits if d else 0)

    def _open_disk(self, path: Path) -> DiskCache | None:
        """The disk tier, when the plan gives it room (its files are opened on its thread)."""
        plan = self.plan
        if not plan.disk_bytes:
            return None
        root = plan.wishes.home / "prompt-cache"
        llama = llama_cpp_version()
        disk = DiskCache(
            root, plan.disk_bytes, path, plan.kv_type, plan.flash_attn, llama, self._poke
        )
        disk.max_pending = plan.shelf_bytes  # queued writes hold at most a shelf's worth of RAM
        return disk

    def _poke(self) -> None:
        """Wake the scheduler: the disk tier opened, or a fetch finished."""
        with self._wake:
            self._wake.notify()

    def _free(self) -> None:
        lib = self._lib
        lib.llama_batch_free(self._batch.raw)
        lib.llama_free(self._ctx)
        lib.llama_model_free(self._model)

    # -- the scheduler thread ------------------------------------------------------------

    def _run(self) -> None:
        _name_os_thread("edge-engine")
        try:
            self._loop()
        except BaseException as exc:  # a bug here must not leave callers waiting for ever
            log.exception("the engine's scheduler failed")
            self.failed = f"The engine's scheduler failed: {exc!r}"
        finally:
            self._shut()

    # C901 exceptions: the scheduler's loop and step each read best as one sequence of
    # phases on the one thread that owns the context; split, their invariants scatter.
    def _loop(self) -> None:  # noqa: C901
        while True:
            with self._wake:
                while not (
                    self._closing or self._forget_idle or self._active() or self._admissible()
                ):
                    self._wake.wait(timeout=1.0 if self._waiting else None)
                if self._closing:
                    return
                if self._forget_idle:
                    self._forget_idle = False
                    self._shelf.clear()
                    for slot in self._slots:
                        if slot.ticket is None and slot.tokens:
                            self._forget(slot)
                starting = self._admit()
            # Outside the lock: parking and restoring copy cells, and submit() must not wait.
            for slot in starting:
                self._begin(slot)
            self._park_idle()
            try:
                self._step()
            except EngineFailedError as exc:
                self.failed = exc.message
                for slot in self._active():
                    self._retire(slot, exc)
                return
            except Exception as exc:  # llama.cpp failed the step: every live sequence's KV
                for slot in self._active():  # is in doubt, so each fails and is forgotten
                    self._forget(slot)
                    self._retire(slot, _as_edge(exc))
            self._flush()

    def _shut(self) -> None:
        """Fail whatever is still running or waiting, then tell the server if we failed."""
        with self._wake:
            self._closing = True
            waiting, self._waiting = list(self._waiting), deque()
        if not self.failed:  # a failed engine's cells are in doubt
            try:
                self._keep_on_disk()
            except Exception:
                log.exception("could not write the cached prompts to disk")
        closing = shutting_down()
        if self.failed:  # the server reloads the engine: those cut off may retry soon
            closing = EngineClosedError(self.failed, "Retry in a moment.")
        for slot in self._active():
            self._retire(slot, closing)
        for w in waiting:
            free_sampler(w.sampler)
            self._out.append((w.ticket, closing))
        # The server hears of the failure before the clients do, so that one retrying at
        # once finds the engine already being reloaded, not this closed one.
        if self.failed is not None and self.on_fatal is not None:
            try:
                self.on_fatal(self.failed)
            except Exception:  # the clients must hear of it all the same
                log.exception("on_fatal failed")
        self._flush()

    def _flush(self) -> None:
        """Hand this step's items over: one `post` per inbox."""
        if not self._out:
            return
        out, self._out = self._out, []
        first = out[0][0].inbox
        if all(t.inbox is first for t, _ in out):
            groups = [(first, out)]
        else:
            by: dict[int, tuple[Inbox, list[tuple[Ticket, Item]]]] = {}
            for pair in out:
                by.setdefault(id(pair[0].inbox), (pair[0].inbox, []))[1].append(pair)
            groups = list(by.values())
        for inbox, items in groups:
            try:
                inbox.post(items)
            except Exception:  # a broken consumer must not stop the others
                log.exception("an inbox refused the engine's events")

    def _active(self) -> list[_Slot]:
        return [s for s in self._slots if s.ticket is not None]

    def _admit(self) -> list[_Slot]:
        """Drop cancelled waiters, then give waiting jobs free slots (caller holds the
        condition); returns the slots whose jobs `_begin` must start."""
        if any(w.ticket.cancelled for w in self._waiting):
            for w in [w for w in self._waiting if w.ticket.cancelled]:
                self._waiting.remove(w)
                self._drop(w)
        starting = []
        for w in list(self._waiting):
            free = [s for s in self._slots if s.ticket is None]
            if not free:
                break
            if not self._fetched(w):
                continue  # its prefix is being read from disk; later jobs may go first
            self._waiting.remove(w)
            slot = self._place(w.ticket.job.prompt, free)
            slot.ticket, slot.state, slot.sampler = w.ticket, w.state, w.sampler
            slot.fetched = w.fetch.parked if w.fetch else None
            starting.append(slot)
        return starting

    def _admissible(self) -> bool:
        """Whether a waiting job could start now (caller holds the condition)."""
        free = any(s.ticket is None for s in self._slots)
        return free and any(w.ticket.cancelled or not self._on_disk(w) for w in self._waiting)

    def _on_disk(self, w: _Waiting) -> bool:
        """Whether `w` waits for the disk tier: its prefix being read, or the tier opening."""
        if w.fetch is not None:
            return not w.fetch.done
        disk = self._disk
        # Only a long prompt waits for the tier to open (the model file's first hash), and
        # only when some file exists: a short one would gain little from a file anyway.
        return (
            disk is not None
            and not w.looked
            and not disk.ready.is_set()
            and disk.had_files
            and len(w.ticket.job.prompt) >= DISK_MIN
            and time.monotonic() - w.since < DISK_OPEN_WAIT_S
        )

    def _fetched(self, w: _Waiting) -> bool:
        """Whether `w` may start: its prefix is read from disk when a file holds much more
        of it than the KV cache and the shelf do (asked once per job)."""
        disk = self._disk
        if self._on_disk(w):
            return False
        if disk is None or w.fetch is not None or w.looked:
            return True
        w.looked = True
        prompt = w.ticket.job.prompt
        if w.ticket.job.params.prompt_logprobs:
            return True  # reads its whole prompt anyway
        entry, on_disk = disk.best(prompt[:-1])
        if entry is None:
            return True
        here = max(common_prefix(s.tokens, prompt) for s in self._slots)
        here = max(here, self._shelf.best(prompt, touch=False)[1])
        if on_disk - here < max(RESTORE_GAIN, len(entry.tokens) // 64):
            return True
        w.fetch = disk.load(entry)
        return False

    def _begin(self, slot: _Slot) -> None:
        try:
            self._start(slot)
        except Exception as exc:  # this job fails; the slot is emptied for others
            self._forget(slot)
            self._retire(slot, _as_edge(exc))

    def _drop(self, w: _Waiting) -> None:
        """A job cancelled before it ran: its error, or an empty "cancelled" finish."""
        free_sampler(w.sampler)
        if w.ticket.error is not None:
            self._out.append((w.ticket, w.ticket.error))
            return
        for event in w.state.finish("cancelled", len(w.ticket.job.prompt), 0):
            self._out.append((w.ticket, event))

    def _place(self, prompt: list[int], free: list[_Slot]) -> _Slot:
        """A slot whose cached sequence is mostly a prefix of the prompt (the next turn of
        its conversation, or the same prompt again) goes on in place; otherwise the least
        recently used slot, an empty one first, so that other cached conversations survive.
        Any shared prefix is then copied from whichever slot holds the longest one."""
        shared = {s.seq: common_prefix(s.tokens, prompt) for s in free}
        best = max(free, key=lambda s: shared[s.seq])
        if best.tokens and 2 * shared[best.seq] >= len(best.tokens):
            return best
        return min(free, key=lambda s: (bool(s.tokens), s.last_used))

    def _start(self, slot: _Slot) -> None:
        assert slot.ticket is not None
        job = slot.ticket.job
        prompt = job.prompt
        fetched, slot.fetched = slot.fetched, None
        if fetched is not None:  # read from disk for this job: kept on the shelf from now
            self._shelf.put(list(fetched.tokens), fetched.data)
        if slot.tokens and not self._continues(slot, prompt):
            # Another conversation's cells: kept whole on the shelf; the part this prompt
            # shares stays in place.
            self._park(slot, keep=common_prefix(slot.tokens, prompt))
        # The last prompt token must be evaluated for its logits; for the prompt's
        # logprobs, every token (nothing cached is reused).
        last = 0 if job.params.prompt_logprobs else len(prompt) - 1
        keep = self._reuse(slot, prompt, last, fetched)
        self._admissions += 1
        slot.tokens, slot.cached, slot.admitted = prompt[:keep], keep, self._admissions
        slot.prompt_len, slot.feed = len(prompt), list(prompt[keep:])
        if job.params.prompt_logprobs:
            slot.echo = [TokenLogprob(prompt[0], self.vocab.shown(prompt[0]), None)]

    def _reuse(self, slot: _Slot, prompt: list[int], last: int, fetched: Parked | None) -> int:
        """Give the slot's sequence the longest cached prefix of `prompt` (at most `last`
        tokens): its own cells, a copy of another slot's, the shelf's or the one `fetched`
        from disk (when the shelf could not keep it). Returns its length."""
        common = {s.seq: common_prefix(s.tokens, prompt) for s in self._slots}
        donor = max(self._slots, key=lambda s: common[s.seq])
        keep = min(common[slot.seq], last)
        shared = min(common[donor.seq], last)
        entry, parked = self._shelf.best(prompt)
        if fetched is not None:
            n = common_prefix(fetched.tokens, prompt)
            if n > parked:
                entry, parked = fetched, n
        parked = min(parked, last)
        gain = parked - max(keep, shared)
        lib = self._lib
        # Restoring copies the whole entry back: worth it when it saves real prefill.
        if entry is not None and gain >= max(RESTORE_GAIN, len(entry.tokens) // 64):
            for other in self._slots:  # finished ones leave now (as `_park_idle` would):
                if other is not slot and other.ticket is None and other.tokens:
                    self._park(other)  # the restored cells need their room
            if self._restore(slot, entry):
                lib.llama_memory_seq_rm(self._mem, slot.seq, parked, -1)
                return parked
            keep = 0  # a failed restore leaves the sequence empty
        if donor is not slot and shared > keep:
            lib.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
            lib.llama_memory_seq_cp(self._mem, donor.seq, slot.seq, 0, shared)
            return shared
        lib.llama_memory_seq_rm(self._mem, slot.seq, keep, -1)
        return keep

    def _park_idle(self) -> None:
        """While any job runs, finished sequences leave the cache for the shelf: the live
        ones would otherwise compute attention over their cells at every step. One that a
        running job goes on from is dropped instead: that job holds what it shares."""
        live = [s.ticket.job.prompt for s in self._slots if s.ticket is not None]
        if not live:
            return
        for slot in self._slots:
            if slot.ticket is None and slot.tokens:
                if any(self._continues(slot, prompt) for prompt in live):
                    self._forget(slot)
                else:
                    self._park(slot)

    @staticmethod
    def _continues(slot: _Slot, prompt: list[int]) -> bool:
        """Whether `prompt` goes on from the conversation in the slot (see CONTINUE_SLACK)."""
        n = slot.prompt_len - min(CONTINUE_SLACK, slot.prompt_len // 2)
        return n > 0 and len(prompt) >= n and prompt[:n] == slot.tokens[:n]

    def _park(self, slot: _Slot, keep: int = 0) -> None:
        """Copy the slot's cells to the shelf (when it can keep them), then free all but
        the first `keep`. When the first `keep` are nearly all of them (an agent's next
        question after the same long prefix), the rest is cheaper to read again than a
        copy of the whole sequence is to make: it is copied only for the disk, once."""
        lib, seq, n = self._lib, slot.seq, len(slot.tokens)
        if n >= PARK_MIN:
            to_disk = self._disk is not None and self._disk.wants(slot.tokens)
            size = self._size(slot)
            worth = n - keep >= max(PARK_MIN, n // 8) and self._shelf.fits(size)
            data = self._copy(slot, size) if to_disk or worth else None
            if data is not None:
                if to_disk:
                    self._disk.save(slot.tokens, data)  # type: ignore[union-attr]
                self._shelf.put(slot.tokens, data)
        lib.llama_memory_seq_rm(self._mem, seq, keep, -1)
        slot.tokens = slot.tokens[:keep]

    def _size(self, slot: _Slot) -> int:
        return int(self._lib.llama_state_seq_get_size(self._ctx, slot.seq))

    def _copy(self, slot: _Slot, size: int) -> Any:
        """The slot's cells as llama.cpp serializes them, `size` bytes at most (None if it
        could not)."""
        data = np.empty(size, dtype=np.uint8)
        n = self._lib.llama_state_seq_get_data(self._ctx, _bytes_ptr(data), size, slot.seq)
        return data[:n] if n else None

    def _keep_on_disk(self) -> None:
        """At a clean close, write the long sequences still in the KV cache to disk (the
        shelf's were written as they were parked), so that a restart or a wake finds them."""
        if self._disk is None:
            return
        for slot in self._slots:
            if len(slot.tokens) >= PARK_MIN and self._disk.wants(slot.tokens):
                data = self._copy(slot, self._size(slot))
                if data is not None:
                    self._disk.save(slot.tokens, data)

    def _restore(self, slot: _Slot, entry: Parked) -> bool:
        """Put a parked sequence's cells back as the slot's sequence; False when the
        cache has no room for them (the slot's sequence is then empty)."""
        data = entry.data
        slot.tokens = []
        done = self._lib.llama_state_seq_set_data(
            self._ctx, _bytes_ptr(data), data.nbytes, slot.seq
        )
        if not done:
            log.info("no room in the KV cache to restore a parked prefix; reading it again")
            self._lib.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
        return bool(done)

    def _step(self) -> None:  # noqa: C901  (see _loop)
        for slot in self._active():
            if slot.ticket is not None and slot.ticket.cancelled:
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
        for slot, first, rows in self._echo_rows:
            self._read_echo(slot, first, rows)
        for slot, _, output in plan:
            if output is None:
                continue
            try:
                self._sample(slot, output)
            except Exception as exc:  # one sequence's failure is not the others'
                self._forget(slot)
                self._retire(slot, _as_edge(exc))

    def _fill(self, live: list[_Slot], prompts: bool) -> list[tuple[_Slot, list[int], int | None]]:
        """Fill the batch: generating sequences first (one token each), then, with
        `prompts`, prompt chunks in the room left, oldest first.
        Returns (slot, tokens taken, logits index or None)."""
        batch, budget = self._batch, self.plan.n_batch
        batch.clear()
        self._echo_rows.clear()
        plan: list[tuple[_Slot, list[int], int | None]] = []
        outputs = 0  # logits rows asked for: llama.cpp holds n_outputs_max at most
        for slot in sorted(live, key=lambda s: (len(s.feed) > 1, s.admitted)):
            if len(slot.feed) > 1 and not prompts:
                break
            take = slot.feed[:budget]
            room = self.plan.n_outputs_max - outputs  # llama.cpp aborts on a row too many
            if slot.echo is not None:  # logits for every token: as many as rows are free
                take = take[:room]
            elif room <= 0 and len(take) == len(slot.feed):
                take = take[:-1]  # the prompt's last token waits a step for its row
            if not take:
                continue
            whole = len(take) == len(slot.feed)
            if slot.echo is None:
                batch.add_all(take, len(slot.tokens), slot.seq, logits_last=whole)
                outputs += whole
            else:
                batch.add_all(take, len(slot.tokens), slot.seq, logits_last=True, every=True)
                rows = len(take) - 1 if whole else len(take)  # the last row is sampled
                self._echo_rows.append((slot, batch.n - len(take), rows))
                outputs += len(take)
            plan.append((slot, take, batch.n - 1 if whole else None))
            budget -= len(take)
        return plan

    def _read_echo(self, slot: _Slot, first: int, rows: int) -> None:
        """The logprobs of the prompt tokens that rows `first`… of the batch predict (each
        row, the next token's); once the prompt is read, they go out in one event."""
        assert slot.echo is not None and slot.ticket is not None and slot.state is not None
        prompt, top = slot.ticket.job.prompt, slot.ticket.job.params.logprobs or 0
        done = len(slot.echo)  # the row at prompt position `done - 1` predicts prompt[done]
        reader = self._logprobs
        for i in range(rows):
            token = prompt[done + i]
            slot.echo.append(reader.of(self._logits(first + i), token, top))
        if len(slot.echo) == len(prompt):
            event = TokenEvent("", None, False, slot.state.elapsed(), tuple(slot.echo))
            self._out.append((slot.ticket, event))
            slot.echo = None

    def _decode(self) -> None:
        lib = self._lib
        while True:
            rc = lib.llama_decode(self._ctx, self._batch.raw)
            if rc == 0:
                return
            if rc < -1:  # fatal: what was decoded of the batch stays, half-done
                raise EngineFailedError(
                    f"llama.cpp failed to decode a batch (code {rc}); the engine stopped.",
                    "Retry in a moment.",
                )
            if rc != 1:
                raise EdgeError(f"llama.cpp failed to decode a batch (code {rc}).")
            # No room in the KV cache (llama.cpp has undone the batch): drop a finished
            # sequence kept for reuse and try again; with none left, give up.
            idle = [s for s in self._slots if s.ticket is None and s.tokens]
            if not idle:
                raise ContextFullError(
                    "The server's context is full with the conversations it is serving.",
                    "Retry in a moment, or start the server with a larger --ctx.",
                )
            self._forget(min(idle, key=lambda s: s.last_used))

    def _forget(self, slot: _Slot) -> None:
        self._lib.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
        slot.tokens = []

    def _sample(self, slot: _Slot, index: int) -> None:
        """Sample the slot's next token and act on it, checks in this order: the token
        limit, the context, end of generation, a stop string, the loop guard."""
        ticket, state = slot.ticket, slot.state
        assert ticket is not None and state is not None
        n_ctx = self.plan.n_ctx
        limit = ticket.job.params.max_tokens
        if len(state.generated) >= (n_ctx if limit is None else limit):
            self._retire(slot, "length")
            return
        if len(slot.tokens) >= n_ctx:
            state.notes.append("context full")
            self._retire(slot, "length")
            return
        token = self._choose(slot.sampler, index)
        top = ticket.job.params.logprobs
        logprobs = () if top is None else (self._logprobs.of(self._logits(index), token, top),)
        if self.vocab.is_eog(token):
            if logprobs:  # its probability is part of the answer (loglikelihoods)
                event = TokenEvent("", token, False, state.elapsed(), logprobs)
                self._out.append((ticket, event))
            self._retire(slot, "stop")
            return
        event, stopped = state.emit(token)
        if logprobs:
            event = replace(event, logprobs=logprobs)
        self._out.append((ticket, event))
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
            if len(slot.tokens) + 1 + len(close) > n_ctx:
                state.notes.append("context full")
                self._retire(slot, "length")
                return
            slot.feed.extend(close)
            self._out.append((ticket, event))

    def _choose(self, sampler: Any, index: int) -> int:
        """The next token from batch row `index`'s logits."""
        if type(sampler) is Greedy:
            return sampler.pick(self._logits(index), self.vocab.n_vocab)
        return int(self._lib.llama_sampler_sample(sampler, self._ctx, index))

    def _logits(self, index: int) -> Any:
        """A pointer to batch row `index`'s logits."""
        return self._lib.llama_get_logits_ith(self._ctx, index)

    def _retire(self, slot: _Slot, outcome: str | EdgeError) -> None:
        """End the slot's job; its KV stays cached for the next job's prefix."""
        ticket, state, sampler = slot.ticket, slot.state, slot.sampler
        slot.ticket, slot.state, slot.sampler, slot.feed = None, None, None, []
        slot.echo = None
        slot.last_used = time.monotonic()
        if ticket is None or state is None:
            return
        free_sampler(sampler)
        if isinstance(outcome, EdgeError):
            self._out.append((ticket, outcome))
            return
        n_prompt = len(ticket.job.prompt)
        for event in state.finish(outcome, n_prompt, slot.cached):  # type: ignore[arg-type]
            self._out.append((ticket, event))


def _name_os_thread(name: str) -> None:
    """Show the scheduler as `name` in top, py-spy and /proc (Linux; elsewhere nothing)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _as_edge(exc: Exception) -> EdgeError:
    return exc if isinstance(exc, EdgeError) else EdgeError(f"The engine failed: {exc}")
