"""Up to `engine.parallel` generations at once, a bounded FIFO of waiting requests.

Each generation runs in a worker thread; events cross into the event loop through an
asyncio queue. With a batching engine (edge.batch) the threads only carry events: the
engine's scheduler decodes all running generations together. When the consumer goes
away (client disconnect, error), the generation is cancelled and its slot is handed to
the next request as soon as the thread lets go. On shutdown, `drain()` ends the running
generations with a finish reason and refuses the rest (503).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from edge.batch import BatchEngine, shutting_down
from edge.engine import Engine, Event, Finish, SamplingParams, ThinkingControl, TokenEvent
from edge.errors import EdgeError
from edge.server.metrics import Metrics

KEEPALIVE_AFTER = 10.0  # seconds without an event before the stream gets a comment line


class QueueFullError(EdgeError):
    """Too many requests are already waiting (HTTP 429)."""


class Keepalive:
    """Marker yielded while the prompt is still being read, so proxies keep the stream open."""


END = object()  # the worker thread's last item


class EngineWorker:
    """Admits generations to one engine, `engine.parallel` at a time (1 for an Engine);
    counts what /metrics reports."""

    def __init__(
        self,
        engine: Engine | BatchEngine,
        max_queue: int = 16,
        metrics: Metrics | None = None,
        keepalive_after: float = KEEPALIVE_AFTER,
    ) -> None:
        self.engine = engine
        self.keepalive_after = keepalive_after
        self.metrics = metrics or Metrics()
        self.max_queue = max_queue
        self.waiting = 0
        self.in_flight = 0
        self.generated_tokens = 0  # every token sampled, for /metrics and the disconnect test
        self.parallel = int(getattr(engine, "parallel", 1))
        self.draining = False  # a graceful shutdown has begun: no new generations
        self._live: set[threading.Event] = set()  # the cancel events of running generations
        self._slots = asyncio.Semaphore(self.parallel)  # FIFO: waiters wake in arrival order
        self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="edge-engine")

    def admit(self, prompt: list[int], params: SamplingParams) -> None:
        """Refuse now what cannot run: a prompt that does not fit, or a full queue.

        Called before a streamed response starts, so these get a proper HTTP status.
        """
        if self.draining:
            raise shutting_down()
        self.engine.check_prompt(prompt, params.max_tokens)
        if self._slots.locked() and self.waiting >= self.max_queue:
            raise QueueFullError(
                f"The server is busy: {self.waiting} requests are already waiting.",
                "Retry in a few seconds.",
            )

    async def stream(
        self, prompt: list[int], params: SamplingParams, control: ThinkingControl
    ) -> AsyncIterator[Event | Keepalive]:
        """Events of one generation; closing the iterator cancels it (also while waiting)."""
        self.admit(prompt, params)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        if self.draining:  # it waited through the start of a shutdown: it never runs
            self._slots.release()
            raise shutting_down()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        self._live.add(cancel)  # no await since the draining check: drain() cannot miss it

        def produce() -> None:
            times: list[float] = []
            try:
                for event in self.engine.generate(prompt, params, cancel=cancel, thinking=control):
                    if isinstance(event, TokenEvent) and event.token_id >= 0:
                        self.generated_tokens += 1
                        times.append(event.elapsed)
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # handed to the consumer, which raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                self.metrics.generation(len(prompt), times[0] if times else None, gaps)
                loop.call_soon_threadsafe(queue.put_nowait, END)

        self.in_flight += 1
        done = loop.run_in_executor(self._pool, produce)
        # The engine is free only when the thread has returned, whatever the consumer does.
        done.add_done_callback(lambda _: self._release())
        try:
            async for item in drain(queue, self.keepalive_after):
                yield item
        finally:
            cancel.set()
            self._live.discard(cancel)

    def _release(self) -> None:
        self.in_flight -= 1
        self._slots.release()

    def drain(self) -> None:
        """Begin a graceful shutdown (from any thread, but not inside a signal handler:
        Event.set takes a lock). Running generations end at the engine's next step with
        finish reason "cancelled" (OpenAI's "length": the text was cut, as by max_tokens),
        so streams close with a final chunk and [DONE]; waiting and new requests get 503."""
        self.draining = True
        for cancel in list(self._live):
            cancel.set()

    def close(self) -> None:
        """End running generations (see drain) and stop the worker threads."""
        self.drain()
        self._pool.shutdown(wait=True)


async def drain(
    queue: asyncio.Queue[object], keepalive_after: float
) -> AsyncIterator[Event | Keepalive]:
    """Items from the worker thread until its end marker; a Keepalive after each silent spell."""
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), keepalive_after)
        except asyncio.TimeoutError:
            yield Keepalive()
            continue
        if item is END:
            return
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, (TokenEvent, Finish)):
            yield item
