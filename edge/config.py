"""Settings: defaults, then EDGE_QWEN_* environment variables, then CLI flags.

Read once at the edge of the program (the CLI, the server factory) and passed down
explicitly; core code never reads the environment itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REPO = "Qwen/Qwen3-0.6B"
DEFAULT_QUANT = "Q8_0"


def default_home() -> Path:
    """The store folder: $XDG_CACHE_HOME/edge-qwen, else ~/.cache/edge-qwen."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "edge-qwen"


class Settings(BaseSettings):
    """Everything configurable, with EDGE_QWEN_ environment overrides."""

    model_config = SettingsConfigDict(env_prefix="EDGE_QWEN_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Model store folder")
    repo: str = Field(default=DEFAULT_REPO, description="Default Hugging Face repo for pull")
    quant: str = Field(default=DEFAULT_QUANT, description="Default quantization type for pull")
    threads: int | None = Field(default=None, description="CPU threads (default: physical cores)")
    api_key: str | None = Field(default=None, description="Bearer key the server requires")

    @property
    def models_dir(self) -> Path:
        """Where finished models live, one folder each."""
        return self.home / "models"
