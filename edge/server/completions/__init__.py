"""OpenAI's legacy text completions API, `POST /v1/completions`: route.py (the route, SSE
framing, folding), request.py (sampling), answer.py (text_completion objects, the echo),
schema.py (the request's wire model). The prompt is completed as is: no chat template."""
