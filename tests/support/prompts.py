"""The requests many tests send: one user message, and one tool (the one the scripted
"tooling" model calls)."""

from __future__ import annotations

HI = [{"role": "user", "content": "Hi"}]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time now",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]
