"""Route llama.cpp's own log lines: quiet by default, captured when we need the reason.

llama.cpp reports why a load or a quantization failed only through its log callback;
the C call itself returns a bare status. We keep the lines so errors can quote them.

Importing this module installs our callback for good: llama-cpp-python's own prints every
line to stderr unless a `Llama` object has turned it down, and we make no `Llama`. Lines go
to the "edge.llama" logger: errors outside a capture as warnings, the rest as debug.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp

log = logging.getLogger("edge.llama")
_lock = threading.RLock()  # re-entered by nested captures on one thread
_lines: list[str] | None = None
_ERROR = 3  # GGML_LOG_LEVEL_ERROR


@llama_cpp.llama_log_callback
def _capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", errors="replace")
    lines = _lines
    if lines is not None:  # quoted by the error the caller raises, if it fails
        lines.append(line)
    elif level == _ERROR:
        log.warning("llama.cpp: %s", line.rstrip())
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("llama.cpp: %s", line.rstrip())


llama_cpp.llama_log_set(_capture, ctypes.c_void_p(0))


@contextmanager
def captured_llama_log() -> Iterator[list[str]]:
    """Collect llama.cpp's log lines (instead of printing them) for the duration.

    Nested on one thread, the inner block shares the outer block's list.
    """
    global _lines
    with _lock:
        if _lines is not None:
            yield _lines
            return
        _lines = []
        try:
            yield _lines
        finally:
            _lines = None


def last_error(lines: list[str]) -> str:
    """The most telling line of a failed call: the last one that mentions an error."""
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "failed" in low or "exception" in low:
            return line.strip()
    return lines[-1].strip() if lines else "no details from llama.cpp"
