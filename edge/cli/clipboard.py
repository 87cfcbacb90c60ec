"""`/copy`: the last answer to the system clipboard, through whichever tool this desktop has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from edge.errors import UsageError

# (command, the variable its clipboard needs: None if it needs none), tried in order.
TOOLS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("wl-copy",), "WAYLAND_DISPLAY"),
    (("xclip", "-selection", "clipboard"), "DISPLAY"),
    (("xsel", "--clipboard", "--input"), "DISPLAY"),
    (("pbcopy",), None),
    (("clip.exe",), None),  # WSL
)


def copy(text: str) -> str:
    """Put `text` on the clipboard; returns the tool's name. UsageError when there is none."""
    for argv, needs in TOOLS:
        if (needs is None or os.environ.get(needs)) and shutil.which(argv[0]):
            try:
                subprocess.run(argv, input=text.encode("utf-8"), check=True, timeout=10)
            except (OSError, subprocess.SubprocessError) as exc:
                raise UsageError(f"{argv[0]} could not take the text ({exc}).") from None
            return argv[0]
    where = "" if sys.platform == "darwin" else " (wl-clipboard, xclip or xsel, with a display)"
    raise UsageError(
        f"No clipboard reachable here{where}.", "/save FILE writes the conversation instead."
    )
