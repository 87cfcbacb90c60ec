"""edge-qwen: a llama.cpp edge runtime for Qwen3-0.6B."""

__version__ = "0.1.0"
