"""The loaded model behind the routes, and the one question every API route asks it first:
is it ready to take a request?"""

from __future__ import annotations

from edge.chat.template import ChatTemplate
from edge.errors import LoadingError, shutting_down
from edge.server.worker import EngineWorker


class Runtime:
    """The loaded model behind the routes; None fields while loading."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.worker: EngineWorker | None = None
        self.template: ChatTemplate | None = None
        self.failed: str | None = None
        self.draining = False

    def drain(self) -> None:
        """A graceful shutdown begins (on the event loop): running generations end now with
        a finish reason, queued and new requests get 503."""
        self.draining = True
        if self.worker is not None:
            self.worker.drain()

    def ready(self) -> tuple[EngineWorker, ChatTemplate]:
        """The worker and template, or the error that says why there are none (503)."""
        if self.draining:  # also covers a model that finishes loading during the shutdown
            raise shutting_down()
        if self.worker is None or self.template is None or self.failed:
            raise LoadingError(
                self.failed or "The model is still loading.", "Retry in a few seconds."
            )
        return self.worker, self.template
