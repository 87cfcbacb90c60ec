"""A fake engine at the seam (`edge.engine.seam.EngineAPI`), for fast tests of the server.

`enqueue` scripts the next job's answer: text pieces (one TokenEvent each, one engine step
apart) and a finish reason (and the stop string that ended it, if one did), or an error.
A job waits while `slots` others run, just as the real scheduler queues it; `gate` holds
every step until the test sets it. Events are posted from the fake's own thread, one
`post` per step, as the real engine does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.engine import (
    EngineAPI,
    Finish,
    FinishReason,
    Inbox,
    Job,
    Limits,
    ShelfUse,
    Ticket,
    TokenEvent,
    Usage,
)
from edge.errors import (
    ContextOverflowError,
    EdgeError,
    EngineClosedError,
    UsageError,
    shutting_down,
)


@dataclass
class Answer:
    pieces: list[str] = field(default_factory=list)
    reason: FinishReason = "stop"
    error: EdgeError | None = None
    stop_sequence: str | None = None
    fatal: str | None = None  # after the pieces, the engine stops on its own with this reason


class FakeEngine:
    """See the module docstring."""

    def __init__(self, slots: int = 1, n_ctx: int = 4096, step_s: float = 0.001) -> None:
        self.limits = Limits(n_vocab=151936, n_ctx=n_ctx, slots=slots)
        self.shelf = ShelfUse()
        self.on_fatal: Callable[[str], None] | None = None
        self.step_s = step_s
        self.jobs: list[Job] = []
        self.tickets: list[Ticket] = []
        self.grammar_s = 0.0  # how long submit takes for a job with a grammar or schema
        self.grammar_error: EdgeError | None = None  # raised by submit after that time
        self.gate = threading.Event()
        self.gate.set()
        self._script: deque[Answer] = deque()
        self._slots = threading.Semaphore(slots)
        self._threads: list[threading.Thread] = []
        self.closed = False
        self.failed: str | None = None

    def enqueue(
        self, pieces: list[str], reason: FinishReason = "stop", stop_sequence: str | None = None
    ) -> None:
        self._script.append(Answer(pieces, reason, stop_sequence=stop_sequence))

    def enqueue_error(self, error: EdgeError) -> None:
        self._script.append(Answer(error=error))

    def enqueue_fatal(self, pieces: list[str], reason: str) -> None:
        """The next job streams `pieces`, then the engine fails as the real one does on a
        fatal decode: the job gets an EngineClosedError, then `on_fatal(reason)` runs."""
        self._script.append(Answer(pieces, fatal=reason))

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))  # one "token" a byte: counts are easy to predict

    def check_prompt(self, prompt: list[int], max_tokens: int | None = None) -> None:
        if not prompt:
            raise UsageError("The prompt is empty.")
        if len(prompt) + (max_tokens or 1) > self.limits.n_ctx:
            raise ContextOverflowError(f"The context holds {self.limits.n_ctx}.")

    def submit(self, job: Job, inbox: Inbox) -> Ticket:
        if self.closed:
            raise shutting_down()
        self.check_prompt(job.prompt)
        if job.params.grammar is not None or job.params.json_schema is not None:
            time.sleep(self.grammar_s)  # as the real engine compiles the grammar here
            if self.grammar_error is not None:
                raise self.grammar_error
        ticket = Ticket(job, inbox)
        self.tickets.append(ticket)
        answer = self._script.popleft() if self._script else Answer(["ok"])
        self.jobs.append(job)
        thread = threading.Thread(target=self._run, args=(ticket, answer), daemon=True)
        self._threads.append(thread)
        thread.start()
        return ticket

    def _run(self, ticket: Ticket, answer: Answer) -> None:
        start = time.perf_counter()
        while not self._slots.acquire(timeout=0.01):  # waiting for a slot
            if ticket.cancelled:
                break
        else:
            if not ticket.cancelled:
                self._answer(ticket, answer, start)
                return
            self._slots.release()
        # Cancelled before it ran: as the engine, its error, or an empty "cancelled" finish.
        ticket.inbox.post([(ticket, ticket.error or self._finish("cancelled", ticket, 0, start))])

    def _answer(self, ticket: Ticket, answer: Answer, start: float) -> None:
        try:
            if answer.error is not None:
                ticket.inbox.post([(ticket, answer.error)])
                return
            limit = ticket.job.params.max_tokens
            sent = 0
            for piece in answer.pieces:
                self.gate.wait(30)
                time.sleep(self.step_s)
                if ticket.cancelled:
                    ticket.inbox.post([(ticket, self._finish("cancelled", ticket, sent, start))])
                    return
                if limit is not None and sent >= limit:
                    ticket.inbox.post([(ticket, self._finish("length", ticket, sent, start))])
                    return
                sent += 1
                event = TokenEvent(piece, sent, False, time.perf_counter() - start)
                ticket.inbox.post([(ticket, event)])
            if answer.fatal is not None:
                self.failed = answer.fatal
                if self.on_fatal is not None:  # first, as the real engine does
                    self.on_fatal(answer.fatal)
                ticket.inbox.post([(ticket, EngineClosedError(answer.fatal, "Retry in a moment."))])
                return
            finish = self._finish(answer.reason, ticket, sent, start, answer.stop_sequence)
            ticket.inbox.post([(ticket, finish)])
        finally:
            self._slots.release()

    @staticmethod
    def _finish(
        reason: FinishReason, ticket: Ticket, sent: int, start: float, stop: str | None = None
    ) -> Finish:
        usage = Usage(len(ticket.job.prompt), 0, sent, 0)
        total = time.perf_counter() - start
        return Finish(reason, usage, min(total, 0.001), total, (), stop)

    def close(self) -> None:
        self.closed = True
        self.gate.set()
        for thread in self._threads:
            thread.join(timeout=10)


if TYPE_CHECKING:  # mypy checks FakeEngine against the seam's Protocol, member by member
    _CONFORMS: type[EngineAPI] = FakeEngine
