"""The `edge-qwen` command: thin typer verbs over the layers below.

Nothing imports this package; it imports the others inside each command, so
`edge-qwen --help` stays instant.
"""

from edge.cli.app import app, main

__all__ = ["app", "main"]
