"""Slow tests of the real thing: models built and run by llama.cpp, the CLI and servers as
processes, real uvicorn, real clients and browsers. Left out of the fast loop."""
