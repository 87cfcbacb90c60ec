"""Pulling a model over the API, in the server's terms: the `Puller` the CLI injects (the
server never builds a model itself: that is `edge.model`'s, which it may not import), the
one-pull-at-a-time gate, and the throttle that keeps byte progress to a few lines a second.

A puller is asked what a name means before the answer starts, so a name it does not know
keeps its 404 and a busy server its 429; only then does the pull run, in a thread of its
own, reporting `PullStep`s that an API folder turns into its own progress lines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge.errors import QueueFullError

THROTTLE_S = 0.1  # at most ~10 byte-progress lines a second


@dataclass(frozen=True)
class PullStep:
    """What a running pull is doing: a status in words, with byte counts while it has them."""

    status: str
    completed: int | None = None
    total: int | None = None


Progress = Callable[[PullStep], None]


@dataclass(frozen=True)
class PullPlan:
    """What a puller will do for a name: `stored`, nothing (the model is in the store
    already); else `run(progress)` pulls it, blocking, and raises an `EdgeError` on failure."""

    name: str  # the store name the model has, or will have
    stored: bool
    run: Callable[[Progress], None]


class Puller(Protocol):
    """`puller(name)`: the plan for an API model name, or None for a name it cannot pull."""

    def __call__(self, name: str) -> PullPlan | None: ...


class PullGate:
    """One pull at a time: a pull takes minutes of CPU, disk and bandwidth beside the
    served model, and two at once would only slow both. A second pull is refused at once
    (429, as a full queue) rather than held open for minutes with no progress to show."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: str | None = None

    def enter(self, name: str) -> None:
        """Take the gate for `name`, or raise the 429 that says which pull holds it."""
        if not self._lock.acquire(blocking=False):
            raise QueueFullError(
                f"Another pull ({self.running}) is running on this server.",
                "Retry when it has finished; pulls run one at a time.",
            )
        self.running = name

    def leave(self) -> None:
        """Give the gate back (from the pull's thread, when the pull has ended)."""
        self.running = None
        self._lock.release()


class Throttle:
    """Byte progress at most every `interval` seconds; a step whose status changed, and a
    step's last bytes, always pass."""

    def __init__(
        self, interval: float = THROTTLE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: tuple[str, float] | None = None

    def passes(self, step: PullStep) -> bool:
        """Whether `step` is worth a line now."""
        now = self.clock()
        done = step.total is not None and step.completed == step.total
        if (
            step.total is None
            or done
            or self._last is None
            or self._last[0] != step.status
            or now - self._last[1] >= self.interval
        ):
            self._last = (step.status, now)
            return True
        return False
