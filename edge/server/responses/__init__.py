"""OpenAI's Responses API, `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`:
route.py (the routes, named SSE events, folding), request.py (request and input items →
spec), answer.py (text → output items and events), schema.py (the wire models), store.py
(kept responses, for `previous_response_id` and GET)."""
