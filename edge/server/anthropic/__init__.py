"""Anthropic's Messages API, `POST /v1/messages` and `/v1/messages/count_tokens`:
route.py (the routes, named SSE events, folding), request.py (request → spec), answer.py
(text → content blocks), schema.py (the wire models)."""
