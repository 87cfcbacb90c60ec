"""Route llama.cpp's own log lines: quiet by default, captured when we need the reason.

llama.cpp reports why a load or a quantization failed only through its log callback;
the C call itself returns a bare status. We keep the lines so errors can quote them.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp
from llama_cpp import _logger as llama_logger

log = logging.getLogger("edge.llama")
_lock = threading.RLock()  # re-entered by nested captures on one thread
_lines: list[str] | None = None
_ERROR = 3  # GGML_LOG_LEVEL_ERROR


@llama_cpp.llama_log_callback
def _capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", errors="replace")
    if _lines is not None:
        _lines.append(line)
    if level == _ERROR:
        log.debug("llama.cpp: %s", line.rstrip())


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
        llama_cpp.llama_log_set(_capture, ctypes.c_void_p(0))
        try:
            yield _lines
        finally:
            llama_cpp.llama_log_set(llama_logger.llama_log_callback, ctypes.c_void_p(0))
            _lines = None


def last_error(lines: list[str]) -> str:
    """The most telling line of a failed call: the last one that mentions an error."""
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "failed" in low or "exception" in low:
            return line.strip()
    return lines[-1].strip() if lines else "no details from llama.cpp"
