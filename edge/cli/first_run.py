"""Chat's first run: with no model pulled yet, offer to pull the default one, then chat.

A person who types `edge-qwen chat` on a fresh machine is asked once, with the sizes,
instead of being sent to another command. Scripts (no terminal) are never surprised by a
download: they fail with the commands to run unless they said `--yes`. The pull is
`edge-qwen pull`'s own code, so an interrupted download resumes in either command.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from edge.cli.app import human, say
from edge.errors import NotFoundError

if TYPE_CHECKING:
    from edge.config import Settings
    from edge.model.hub import CheckpointSize

_YES = ("", "y", "yes")


def ensure_default_model(cfg: Settings, *, yes: bool) -> None:
    """Pull the default model if chat would load it and it is not stored yet.

    `yes` pulls without asking; otherwise a terminal is asked once and anything
    else fails before downloading anything.
    """
    from edge.model.pipeline import has_default_model

    if cfg.model is not None or has_default_model(cfg):
        return
    if not yes:
        if not _interactive():
            raise NotFoundError(
                "No model pulled yet, and without a terminal to ask on, nothing was downloaded.",
                "Run `edge-qwen pull`, then `edge-qwen chat`; or `edge-qwen chat --yes` "
                "to pull and chat in one go.",
            )
        if not _confirm(_question(cfg)):
            raise NotFoundError(
                "No model pulled yet; nothing was downloaded.",
                "Run `edge-qwen pull` when you want it, then `edge-qwen chat`; "
                "or `edge-qwen chat --model PATH.gguf` to use a GGUF file you have.",
            )
    _pull_default(cfg)


def _interactive() -> bool:
    # The question goes to stderr and the answer comes from stdin: both must be a person's.
    return sys.stdin.isatty() and sys.stderr.isatty()


def _question(cfg: Settings) -> str:
    """The one question, with what the pull costs when the hub can say."""
    from edge.model.hub import checkpoint_size
    from edge.model.quantize import quant_type

    quant = quant_type(cfg.quant)
    say(f"No model pulled yet; asking the hub how big {cfg.repo} is…")
    sizes = _describe(checkpoint_size(cfg.repo), quant.bpw)
    return f"Download {cfg.repo} and store it as {quant.name} ({sizes})? [Y/n] "


def _describe(size: CheckpointSize | None, bpw: float) -> str:
    if size is None:
        return "size unknown: the hub did not answer"
    text = f"download {human(size.download)}"
    if size.parameters is not None:
        # Nominal bits per weight of the quant's blocks: close to the file llama.cpp writes.
        text += f", stored about {human(size.parameters * bpw / 8)}"
    return text


def _confirm(question: str) -> bool:
    """Ask once; Enter or y/yes agrees, anything else (Ctrl-C and Ctrl-D too) refuses."""
    try:  # the question inside: a Ctrl-C typed as soon as it shows is a refusal too
        say(question, nl=False)
        line = sys.stdin.readline()
    except KeyboardInterrupt:
        line = None
    if not line:  # Ctrl-C, or Ctrl-D (end of input) with nothing typed
        say("")
        return False
    return line.strip().lower() in _YES


def _pull_default(cfg: Settings) -> None:
    from edge.cli.models import pull_with_progress
    from edge.model.pipeline import PullOptions

    try:
        pull_with_progress(PullOptions(cfg.repo), cfg)
    except KeyboardInterrupt:
        # Said here, not by the command wrapper: what was downloaded is kept, to resume.
        say("\nPull stopped: `edge-qwen chat --yes` or `edge-qwen pull` picks it up again.")
        raise typer.Exit(130) from None
