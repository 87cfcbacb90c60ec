"""The server's side of the engine seam: admission, one inbox on the event loop, drain.

Jobs go straight to the engine, whose scheduler decodes `limits.slots` of them together
and queues the rest; at most `max_queue` may wait, more get 429. The engine posts each
step's events for every stream in one call; `AsyncInbox` crosses into the event loop
with one `call_soon_threadsafe` per step and wakes only the streams that got something.
No thread per request, no task or timer per token: keep-alives come from one ticker that
runs only while streams are open. On shutdown, `drain()` ends the running generations
with a finish reason and refuses the rest (503).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from edge.engine.seam import EngineAPI, Event, Finish, Item, Job, Ticket, TokenEvent
from edge.errors import EdgeError, QueueFullError, shutting_down
from edge.server.metrics import Metrics
from edge.server.params import fit_to_room

# Seconds without an event before a stream gets a keep-alive comment. Read when a worker
# is made, so tests can shorten it (monkeypatch) instead of waiting.
KEEPALIVE_AFTER = 10.0


class Keepalive:
    """Marker yielded while the prompt is still being read, so proxies keep the stream open."""


KEEPALIVE = Keepalive()

Stream = AsyncGenerator[Event | Keepalive, None]
"""One job's events as `EngineWorker.start` gives them; closing it cancels the job."""


async def fold(events: Stream, on_token: Callable[[TokenEvent], object]) -> Finish:
    """Run a stream to its end for a non-streaming answer: each token to `on_token`, the
    Finish returned, an engine error raised; leaving early (the client left) cancels it."""
    try:
        async for event in events:
            if isinstance(event, TokenEvent):
                on_token(event)
            elif isinstance(event, Finish):
                return event
    finally:
        await events.aclose()
    raise AssertionError("a stream ends with a Finish or an error")


class _Place:
    """A job's place in the queue, from admission until its stream starts."""

    __slots__ = ("taken",)

    def __init__(self) -> None:
        self.taken = False


class _Box:
    """One stream's items, waiting for its consumer."""

    __slots__ = ("items", "waiter", "last", "keepalive", "times")

    def __init__(self, now: float) -> None:
        self.items: deque[Item] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.last = now  # loop time of the last item or keep-alive
        self.keepalive = False
        self.times: list[float] = []  # when each sampled token came, for /metrics


class AsyncInbox:
    """Routes the engine's items to the streams of one event loop (see the module doc).
    It sees every item, also those of a stream whose client has left, so it keeps the
    count of sampled tokens and says when each job has ended in the engine (`ended`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        keepalive_after: float,
        ended: Callable[[Ticket, list[float]], None],
    ) -> None:
        self.loop, self.keepalive_after, self.ended = loop, keepalive_after, ended
        self.tokens = 0
        self._open: set[_Box] = set()
        self._ticker: asyncio.TimerHandle | None = None

    def post(self, items: list[tuple[Ticket, Item]]) -> None:
        """On the engine's thread: one hop for the whole step."""
        self.loop.call_soon_threadsafe(self._route, items)

    def _route(self, items: list[tuple[Ticket, Item]]) -> None:
        now = self.loop.time()
        for ticket, item in items:
            box = self.box(ticket)
            box.items.append(item)
            box.last = now
            if isinstance(item, TokenEvent):
                if item.token is not None:
                    self.tokens += 1
                    box.times.append(item.elapsed)
            else:
                self.ended(ticket, box.times)
            waiter = box.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def box(self, ticket: Ticket) -> _Box:
        """The job's box (made here: items may arrive before the consumer first looks)."""
        box = ticket.mailbox
        if box is None:
            box = ticket.mailbox = _Box(self.loop.time())
        return box

    async def items(self, ticket: Ticket) -> AsyncIterator[Item | Keepalive]:
        """The job's items until its last; a Keepalive after each silent spell."""
        box = self.box(ticket)
        self._open.add(box)
        if self._ticker is None:
            self._schedule_tick()
        try:
            while True:
                while box.items:
                    item = box.items.popleft()
                    yield item
                    if not isinstance(item, TokenEvent):
                        return
                box.waiter = self.loop.create_future()
                await box.waiter
                box.waiter = None
                if box.keepalive:
                    box.keepalive = False
                    yield KEEPALIVE
        finally:
            self._open.discard(box)

    def _schedule_tick(self) -> None:
        period = max(0.01, self.keepalive_after / 4)
        self._ticker = self.loop.call_later(period, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        now = self.loop.time()
        for box in self._open:
            waiter = box.waiter
            if waiter is not None and not waiter.done() and now - box.last >= self.keepalive_after:
                box.keepalive, box.last = True, now
                waiter.set_result(None)
        if self._open:
            self._schedule_tick()


class EngineWorker:
    """Admits jobs to one engine and streams their events; counts what /metrics reports."""

    def __init__(
        self,
        engine: EngineAPI,
        max_queue: int = 16,
        metrics: Metrics | None = None,
        keepalive_after: float | None = None,
    ) -> None:
        self.engine = engine
        self.limits = engine.limits
        self.keepalive_after = KEEPALIVE_AFTER if keepalive_after is None else keepalive_after
        self.metrics = metrics or Metrics()
        self.max_queue = max_queue
        self.in_flight = 0  # admitted and not yet ended in the engine, running or waiting
        self.draining = False  # a graceful shutdown has begun: no new generations
        self._live: set[Ticket] = set()
        self._inbox: AsyncInbox | None = None
        self._tokens_before = 0  # counted by inboxes of event loops that are gone

    @property
    def generated_tokens(self) -> int:
        """Every token sampled, also for streams whose client left (/metrics, tests)."""
        return self._tokens_before + (self._inbox.tokens if self._inbox else 0)

    @property
    def waiting(self) -> int:
        """Jobs admitted but still waiting for a slot."""
        return max(0, self.in_flight - self.limits.slots)

    @property
    def busy(self) -> int:
        """Jobs running in a slot."""
        return min(self.in_flight, self.limits.slots)

    def start(self, job: Job) -> Stream:
        """The one way to run a generation: admit `job` and return its events.

        Admission happens here, once, before any response is sent, so a refusal (shutting
        down, a prompt that does not fit, a full queue) raises with its own HTTP status.
        From admission on the job holds its place in the queue (`in_flight`), so requests
        admitted together cannot overfill it; the place is given back when the engine ends
        the job, or at once if the stream is dropped before it starts. Closing the stream
        cancels the job, also while it waits.
        """
        self._admit(job)
        self.in_flight += 1
        place = _Place()
        events = self._events(job, place)
        weakref.finalize(events, self._give_back, place).atexit = False
        return events

    def _admit(self, job: Job) -> None:
        if self.draining:
            raise shutting_down()
        self.engine.check_prompt(job.prompt)  # the prompt alone must fit
        fit_to_room(job.params, len(job.prompt), self.limits.n_ctx)
        if self.waiting >= self.max_queue and self.in_flight >= self.limits.slots:
            raise QueueFullError(
                f"The server is busy: {self.waiting} requests are already waiting.",
                "Retry in a few seconds.",
            )

    def _give_back(self, place: _Place) -> None:
        if not place.taken:  # dropped unstarted: the engine never saw the job
            self.in_flight -= 1

    async def _events(self, job: Job, place: _Place) -> Stream:
        place.taken = True  # from here on the engine's finish, or an error below, counts it out
        if self.draining:  # the shutdown began after the job was admitted
            self.in_flight -= 1
            raise shutting_down()
        inbox = self._inbox_here()
        try:
            if job.params.grammar is not None or job.params.json_schema is not None:
                ticket = await self._submit_off_loop(job, inbox)
            else:
                ticket = self.engine.submit(job, inbox)
        except asyncio.CancelledError:
            raise  # the count is settled when the submission ends (_submit_off_loop)
        except BaseException:
            self.in_flight -= 1
            raise
        if self.draining:  # the shutdown began while the grammar compiled
            ticket.cancel(shutting_down())
        self._live.add(ticket)
        try:
            async for item in inbox.items(ticket):
                if isinstance(item, EdgeError):
                    raise item
                yield item
        finally:
            ticket.cancel()
            self._live.discard(ticket)

    async def _submit_off_loop(self, job: Job, inbox: AsyncInbox) -> Ticket:
        """Submit on a worker thread: compiling a grammar takes a while, and the event loop
        must not wait for it. If the client leaves meanwhile, the submission still ends
        on its thread; its job is then cancelled at once (and counted out by the engine's
        finish), or, had it failed, counted out here."""
        task = asyncio.ensure_future(asyncio.to_thread(self.engine.submit, job, inbox))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:

            def late(done: asyncio.Future[Ticket]) -> None:
                if done.cancelled() or done.exception() is not None:
                    self.in_flight -= 1
                else:
                    done.result().cancel()

            task.add_done_callback(late)
            raise

    def _ended(self, ticket: Ticket, times: list[float]) -> None:
        self.in_flight -= 1
        self._live.discard(ticket)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        self.metrics.generation(len(ticket.job.prompt), times[0] if times else None, gaps)

    def _inbox_here(self) -> AsyncInbox:
        loop = asyncio.get_running_loop()
        if self._inbox is None or self._inbox.loop is not loop:
            self._tokens_before = self.generated_tokens
            self._inbox = AsyncInbox(loop, self.keepalive_after, self._ended)
        return self._inbox

    def drain(self) -> None:
        """Begin a graceful shutdown (on the event loop). Running generations end at the
        engine's next step with finish reason "cancelled" (OpenAI's "length": the text was
        cut, as by max_tokens), so streams close with a final chunk and [DONE]; waiting and
        new requests get 503."""
        self.draining = True
        for ticket in list(self._live):
            ticket.cancel(shutting_down())

    def close(self) -> None:
        """End running generations (see drain)."""
        self.drain()
