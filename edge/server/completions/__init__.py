"""OpenAI's legacy text completions API, `POST /v1/completions`: route.py (the route, SSE
framing, folding); the prompt is completed as is, with no chat template."""
