"""Anthropic's Messages API, `POST /v1/messages` and `/v1/messages/count_tokens`:
route.py (the routes, named SSE events, folding), answer.py (request → job, text →
content blocks), schema.py (the wire models)."""
