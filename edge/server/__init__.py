"""The HTTP server (`edge-qwen serve`): OpenAI's chat completions, completions and Responses,
Anthropic's Messages and Ollama's API, a folder each, over one engine.

Public face: `create_app(model_id, load, settings, ...)` builds the app around any engine
at the seam; `lifecycle.serve_forever` runs it under uvicorn. See app.py for the map of
the rest.
"""

from edge.server.app import create_app

__all__ = ["create_app"]
