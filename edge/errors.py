"""Domain errors: a one-sentence message plus a hint saying what to do.

Every `EdgeError` subclass lives here but the router's two (`route.litellm.RouterError`,
`route.replicas.ReplicaError`), which only `edge-qwen route` raises. The CLI prints
message and hint and exits non-zero; the HTTP layer maps each class to a status in one
table (edge/server/errors.py). Nothing else should inspect message text to decide what
an error means.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of every error edge-qwen reports to a person."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param: str | None = None  # the request field at fault, for OpenAI's error object

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(EdgeError):
    """The request itself is wrong: unknown quant type, bad option combination."""

    exit_code = 2


class ParamError(UsageError):
    """An invalid request parameter; `param` names it (HTTP 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class NotFoundError(EdgeError):
    """A model, repo, revision or file that does not exist."""


class DownloadError(EdgeError):
    """The hub or mirror could not be reached or refused the download."""


class OfflineError(DownloadError):
    """HF_HUB_OFFLINE is set and what was asked for is not in the cache."""


class InvalidModelError(EdgeError):
    """A folder or file that is not a usable Qwen3 checkpoint or GGUF."""


class DiskFullError(EdgeError):
    """Not enough space (or a file-size limit) where a model is written."""


class QuantizeError(EdgeError):
    """llama.cpp's quantizer failed."""


class StoreError(EdgeError):
    """The model store is inconsistent or cannot be written."""


class OutOfMemoryError(EdgeError):
    """The model does not fit in the memory (RAM or VRAM) that is free."""


class ContextOverflowError(UsageError):
    """The prompt (with the answer asked for) does not fit in the context window."""


class ContextFullError(EdgeError):
    """The shared KV cache has no room left for a running generation (HTTP 503)."""


class EngineClosedError(EdgeError):
    """The engine is shutting down or its scheduler has stopped (HTTP 503)."""


class EngineFailedError(EngineClosedError):
    """llama.cpp failed a decode fatally (e.g. a GPU allocation): the context is not to be
    trusted any more, so the engine stops for good."""


def shutting_down() -> EngineClosedError:
    """What a request gets once the server has begun to stop."""
    return EngineClosedError("The server is shutting down.", "Retry when it is back.")


class QueueFullError(EdgeError):
    """Too many requests are already waiting (HTTP 429)."""


class LoadingError(EdgeError):
    """The server has no model to answer with yet: still loading, or it failed to (HTTP 503)."""


class AuthError(EdgeError):
    """A request to the API without the right key (HTTP 401)."""


class BodyTooLargeError(EdgeError):
    """A request body over the server's size limit (HTTP 413)."""


class BenchError(EdgeError):
    """A contender failed to start or answer during a benchmark."""


class ReferenceBuildError(EdgeError):
    """The reference llama.cpp build (for benchmarks) could not be made."""
