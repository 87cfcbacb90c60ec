"""The `edge-qwen` command: thin typer verbs over the layers below.

Nothing imports this package; it imports the others inside each command, so
`edge-qwen --help` stays instant. Importing the verb modules registers their commands,
in the order `--help` lists them.
"""

# isort: off
from edge.cli import models, chat, serve, service, cache, route, machine  # noqa: F401
from edge.cli.app import app, main

# isort: on

__all__ = ["app", "main"]
