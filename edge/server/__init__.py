"""The OpenAI-compatible HTTP server (`edge-qwen serve`)."""

from edge.server.app import ServerOptions, create_app

__all__ = ["ServerOptions", "create_app"]
