"""`python -m edge.cli`: the same as the `edge-qwen` command."""

from edge.cli import main

main()
