"""The model behind the routes and its life: loaded at start, asleep after an idle spell,
woken by the next request that needs it, reloaded after the engine fails; and the one
question every API route asks first: is it ready to take a request?

States: loading (the first load) → ready ⇄ asleep, ready → restarting → ready after an
engine fault, and failed when a load fails. Asleep, the model, its KV and the engine's
thread are gone; `awake()`, which every route that needs the model awaits first, loads
them again. The Waker middleware marks each request's visit, so a request that woke the
model says how long the load took (header `Edge-Qwen-Load-Ms`), and the idle time counts
from when the last one using the model was answered.
Probes (/health, /metrics, model lists) never wake it and never count as use.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

from edge.chat.template import ChatTemplate
from edge.engine import EngineAPI
from edge.errors import LoadingError, shutting_down
from edge.server.metrics import Metrics
from edge.server.worker import EngineWorker

log = logging.getLogger("edge.server")

State = Literal["loading", "ready", "asleep", "waking", "restarting", "exiting", "failed"]
Load = Callable[[], tuple[EngineAPI, ChatTemplate]]

NEVER = math.inf
"""An idle time (or keep-alive) that never ends: the model stays loaded."""

# Engine faults within this many seconds of each other that make the server give up and
# stop (a supervisor restarts it with a fresh plan) rather than reload for ever.
RESTART_WINDOW_S = 60.0
MAX_RESTARTS_IN_WINDOW = 3
# Socket-activated, the least time a new process waits for the request that started it
# before an idle time (even 0) may end it.
OWED_GRACE_S = 10.0


class Visit:
    """One HTTP request's dealings with the model: whether it holds it up, and how long
    it waited for a load (the Waker's response header, Ollama's `load_duration`)."""

    __slots__ = ("held", "load_s", "worker")

    def __init__(self) -> None:
        self.held = False
        self.load_s: float | None = None
        self.worker: EngineWorker | None = None  # the one it took: freed only once let go


VISIT: ContextVar[Visit | None] = ContextVar("edge_visit", default=None)
"""The request being answered, set by the Waker for the task that answers it."""


def default_idle_s(gpu_layers: int, gpu: str | None) -> float:
    """How long `serve` keeps an unused model loaded when --idle is not given.

    A discrete GPU (CUDA, Vulkan, ROCm) holding a context stays powered: 5 minutes, as
    Ollama, so a laptop's dGPU idles soon after a chat. On a CPU or Apple's unified memory
    the cost of staying loaded is RAM alone, and waking re-reads the model and loses the
    cached prompts: 30 minutes.
    """
    discrete = gpu_layers > 0 and not (gpu or "").lower().startswith(("metal", "mtl", "apple"))
    return 300.0 if discrete else 1800.0


class Runtime:
    """The loaded model behind the routes (see the module doc). Its fields are read and
    written on the event loop; loads and sleeps run on threads of their own."""

    def __init__(
        self,
        model_id: str,
        load: Load | None = None,
        *,
        max_queue: int = 16,
        metrics: Metrics | None = None,
        idle_s: float = NEVER,
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.model_id = model_id
        self._load = load
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.on_failed = on_failed
        self.worker: EngineWorker | None = None
        self.template: ChatTemplate | None = None
        self.failed: str | None = None
        self.draining = False
        self.state: State = "loading"
        self.idle_s = idle_s  # the server's default keep-alive
        self.keep_s = idle_s  # the latest request's own, or the default
        self.using = 0  # requests that need the model, from before waking until answered
        self.last_used = time.monotonic()
        self.load_s: float | None = None  # how long the latest load took
        self.info: Any = None  # the real engine's ModelInfo, kept from the last load
        self.n_ctx = 0  # the loaded context, kept likewise
        self.restarts: list[tuple[float, str]] = []  # (monotonic time, reason) of each
        self.on_sleep: Callable[[], None] | None = None  # run once the model sleeps
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loaded: asyncio.Future[None] | None = None  # the load under way, if one
        self._watch: asyncio.Task[None] | None = None
        self._fatal: str | None = None  # the engine failed; the reload is about to begin
        self._holders: Counter[EngineWorker] = Counter()  # requests that took each worker
        self._dead: EngineWorker | None = None  # a failed one, freed once nobody holds it
        self._freeing: threading.Thread | None = None  # the last engine being freed
        # Socket-activated, the first request is the one that started us: it waited for
        # the first load, and is told so (lifecycle.py sets this).
        self.first_load_owed = False

    # -- the routes' side ------------------------------------------------------------------

    def ready(self) -> tuple[EngineWorker, ChatTemplate]:
        """The worker and template, or the error that says why there are none (503)."""
        if self.draining:  # also covers a model that finishes loading during the shutdown
            raise shutting_down()
        if self.worker is None or self.template is None or self.failed:
            raise LoadingError(
                self.failed or "The model is still loading.", "Retry in a few seconds."
            )
        return self.worker, self.template

    def keep_alive(self, seconds: float | None) -> None:
        """A request's own keep-alive (Ollama's `keep_alive`): how long the model stays
        loaded after it; None: the server's default. 0 puts it to sleep once idle."""
        self.keep_s = self.idle_s if seconds is None else seconds
        if seconds == 0:
            self._nudge()

    @property
    def expires_in(self) -> float:
        """Seconds until the model may sleep (inf: never; 0: now, once unused)."""
        if self.using or (self.worker is not None and self.worker.in_flight):
            return self.keep_s
        return max(0.0, self.keep_s - (time.monotonic() - self.last_used))

    # -- a request's visit -------------------------------------------------------------

    async def awake(self) -> tuple[EngineWorker, ChatTemplate]:
        """`ready()` for a request that needs the model: wakes it if it sleeps, waits for a
        reload under way after a fault, and holds it up until the request is answered.
        The first load at start is not waited for: a request then gets 503 (retry)."""
        visit = VISIT.get()
        if visit is not None and not visit.held:
            visit.held = True
            self.using += 1
            self.keep_s = self.idle_s
        if self._fatal is not None:
            self._restart()
        if self.state == "asleep" and not self.draining:
            self._begin_load("waking")
        if self.first_load_owed and visit is not None and self.load_s is not None:
            self.first_load_owed, visit.load_s = False, self.load_s
        if self.state in ("waking", "restarting") and self._loaded is not None:
            started = time.monotonic()
            await asyncio.shield(self._loaded)
            if visit is not None:
                visit.load_s = time.monotonic() - started
        worker, template = self.ready()
        if visit is not None and visit.worker is None:
            visit.worker = worker
            self._holders[worker] += 1
        return worker, template

    def release(self, visit: Visit) -> None:
        """A request that held the model is answered: the idle time counts from now, and a
        failed engine it was using may be freed now."""
        self.using -= 1
        self.last_used = time.monotonic()
        if visit.worker is not None:
            self._holders[visit.worker] -= 1
            if self._holders[visit.worker] <= 0:
                del self._holders[visit.worker]
                if visit.worker is self._dead:
                    self._reload_after_fault()
        if self.using == 0:
            self._nudge()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """At startup, on the event loop: the first load, and the idle watch."""
        self._loop = asyncio.get_running_loop()
        self._begin_load("loading")
        self._watch = self._loop.create_task(self._watch_idle())

    def close(self) -> None:
        """At shutdown: end running generations, stop watching, then close the engine, so
        that its cached prompts are written to disk for the next start (edge.engine.diskcache)."""
        if self._watch is not None:
            self._watch.cancel()
        if self.worker is not None:
            self.worker.close()
            _free(self.worker.engine)

    def drain(self) -> None:
        """A graceful shutdown begins (on the event loop): running generations end now with
        a finish reason, queued and new requests get 503."""
        self.draining = True
        if self.worker is not None:
            self.worker.drain()

    def sleep_now(self) -> bool:
        """Free the model, its KV and the engine's thread, if nothing uses it; True if it
        went to sleep. Health and metrics go on answering; the next request wakes it."""
        worker = self.worker
        if self.state != "ready" or worker is None or self.using or worker.in_flight:
            return False
        self.metrics.sleeps += 1
        if self.on_sleep is not None:  # sleeping means exiting: the process frees it all
            log.info("idle: the server exits; the next connection starts it again")
            self.state = "exiting"  # a request on an open connection is still answered
            self.on_sleep()
            return True
        self.worker, self.state = None, "asleep"
        log.info("idle: the model sleeps (its memory is freed until the next request)")
        # Off the event loop: closing joins the engine's thread and frees llama.cpp's memory.
        self._freeing = _free_later(worker.engine, "edge-sleep")
        return True

    def _begin_load(self, state: State, now: bool = True) -> None:
        """Enter `state` with a load that requests can wait for; started now, or later by
        `_start_loading` (a reload waits until nobody holds the failed engine)."""
        assert self._loop is not None and self._load is not None
        self.state = state
        self._loaded = self._loop.create_future()
        if now:
            self._start_loading()

    def _start_loading(self) -> None:
        threading.Thread(target=self._load_on_thread, name="edge-load", daemon=True).start()

    def _load_on_thread(self) -> None:
        assert self._load is not None and self._loop is not None
        if self._freeing is not None:  # never two models in memory: the last one goes first
            self._freeing.join()
        started = time.monotonic()
        try:
            engine, template = self._load()
        except Exception as exc:
            self._loop.call_soon_threadsafe(self._loaded_now, None, None, str(exc), 0.0)
            return
        took = time.monotonic() - started
        self._loop.call_soon_threadsafe(self._loaded_now, engine, template, None, took)

    def _loaded_now(
        self,
        engine: EngineAPI | None,
        template: ChatTemplate | None,
        error: str | None,
        took: float,
    ) -> None:
        """On the event loop: the load ended, well or not."""
        if engine is None or template is None:
            self._fail(f"The model failed to load: {error}")
        else:
            engine.on_fatal = self._fatal_on_engine_thread
            failed = getattr(engine, "failed", None)  # it stopped before it could say so
            if failed and self._loop is not None:
                self._fatal = failed
                self._loop.call_soon(self._restart)
            self.template, self.load_s = template, took
            self.info, self.n_ctx = getattr(engine, "info", None), engine.limits.n_ctx
            self.worker = EngineWorker(engine, self.max_queue, self.metrics)
            if self.draining:
                self.worker.drain()
            self.state = "ready"
            self.metrics.loads += 1
            self.metrics.load_seconds += took
            self.last_used = time.monotonic()
        done, self._loaded = self._loaded, None
        if done is not None and not done.done():
            done.set_result(None)

    def _fail(self, reason: str) -> None:
        """Shown by /health and every request from now on; the CLI stops the server."""
        self.state, self.failed = "failed", reason
        if self.on_failed is not None:
            self.on_failed(reason)
        else:
            log.error(reason)

    def _fatal_on_engine_thread(self, reason: str) -> None:
        # Marked at once, so a request arriving before the loop runs _restart waits for
        # the reload (awake) instead of reaching the dead engine.
        self._fatal = reason
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._restart)

    def _restart(self) -> None:
        """The engine stopped on its own (a failed decode, a crashed scheduler): its
        requests have had their error; load a fresh one, unless it keeps failing."""
        reason, self._fatal = self._fatal, None
        if reason is None or self.draining or self.state != "ready":
            return
        now = time.monotonic()
        self.restarts.append((now, reason))
        self.metrics.restarts += 1
        recent = [t for t, _ in self.restarts if now - t < RESTART_WINDOW_S]
        self._dead, self.worker = self.worker, None
        if len(recent) > MAX_RESTARTS_IN_WINDOW:
            self._fail(f"{reason} (the engine failed {len(recent)} times in a minute)")
            return
        log.error("%s Reloading the engine.", reason)
        # Requests waiting in awake() wait for this; the load itself starts once no request
        # still holds the dead engine (one may be tokenizing with its vocabulary).
        self._begin_load("restarting", now=False)
        if not self._holders.get(self._dead):  # type: ignore[arg-type]
            self._reload_after_fault()

    def _reload_after_fault(self) -> None:
        dead, self._dead = self._dead, None
        if dead is not None:
            self._freeing = _free_later(dead.engine, "edge-free")
        if self.state == "restarting":
            self._start_loading()

    def _nudge(self) -> None:
        """Look again soon: a keep-alive of 0 sleeps as soon as the model is unused."""
        if self.keep_s == 0 and self._loop is not None:
            self._loop.call_soon(self._check_idle)

    def _check_idle(self) -> None:
        if self.state != "ready" or self.expires_in > 0 or not math.isfinite(self.keep_s):
            return
        if self.first_load_owed and time.monotonic() - self.last_used < OWED_GRACE_S:
            return  # socket-activated: the connection that started us is still on its way
        self.sleep_now()

    async def _watch_idle(self) -> None:
        # A keep-alive of 0 is acted on when the last request is answered (_nudge), so no
        # tick needs to be fast; asleep, once a second is plenty.
        while True:
            finite = self.keep_s if math.isfinite(self.keep_s) else 60.0
            tick = min(5.0, max(0.25, finite / 10)) if self.state == "ready" else 1.0
            await asyncio.sleep(tick)
            self._check_idle()

    def describe(self) -> dict[str, Any]:
        """/health's body beyond the status: the load, the restarts, the keep-alive."""
        out: dict[str, Any] = {}
        if self.load_s is not None:
            out["load_ms"] = round(self.load_s * 1000)
        if self.restarts:
            out["restarts"] = len(self.restarts)
            out["last_restart"] = self.restarts[-1][1]
        if self.state == "ready" and math.isfinite(self.keep_s):
            out["sleeps_in_s"] = round(self.expires_in, 1)
        return out


def _free_later(engine: EngineAPI, name: str) -> threading.Thread:
    """`_free` on a thread of its own (closing joins the engine's thread); that thread."""
    thread = threading.Thread(target=_free, args=(engine,), name=name, daemon=True)
    thread.start()
    return thread


def _free(engine: EngineAPI) -> None:
    """Close an engine, then hand the heap's free pages back to the system: glibc keeps
    them otherwise, and a server that slept and woke a few dozen times held 240-330 MiB
    asleep instead of 130 (gpu-proxy shape; measured with 60 cycles)."""
    engine.close()
    with contextlib.suppress(Exception):  # glibc only; elsewhere nothing to do
        ctypes.CDLL(None).malloc_trim(0)


LOAD_HEADER = b"edge-qwen-load-ms"


class Waker:
    """Plain ASGI: each HTTP request gets a Visit (see `Runtime.awake`); a request that
    waited for a load gets the `Edge-Qwen-Load-Ms` header; one that held the model up
    lets go of it once its response, streamed or not, is over."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app, self.rt = app, runtime

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        visit = Visit()
        token = VISIT.set(visit)

        async def send_with_load(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and visit.load_s is not None:
                ms = str(round(visit.load_s * 1000)).encode()
                message = {**message, "headers": [*message.get("headers", []), (LOAD_HEADER, ms)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_load)
        finally:
            VISIT.reset(token)
            if visit.held:
                self.rt.release(visit)
