"""OpenAI's chat completions API, `POST /v1/chat/completions`: route.py (the route, SSE
framing, folding), request.py (request → spec), answer.py (text → deltas and
chunks), schema.py (the request's wire model)."""
