"""Benchmarks side by side with upstream llama.cpp (`edge-qwen bench`)."""
