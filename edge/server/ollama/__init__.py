"""Ollama's API under /api/ (chat, generate, version, tags, show, ps, pull): route.py (the
routes, NDJSON framing, folding), request.py (request → spec, the model names served),
answer.py (text → lines and objects, the model's card), schema.py (the wire models)."""
