"""The model layer: from the Hugging Face hub to a finished GGUF in the store.

Public face (imported from the modules, so `edge-qwen --help` loads none of them):
- `pipeline.pull(PullOptions, Settings)`: download → convert → quantize → store;
  `pipeline.ensure_model(name_or_path, Settings)`, the one way anything gets a GGUF.
- `hub`: resumable downloads with mirrors and the offline cache.
- `convert.convert`: our safetensors → GGUF converter (`safetensors_io`, `vocab` below it).
- `quantize.quantize`: llama.cpp's quantizer, one C call.
- `store.ModelStore`: whole models only, each with a manifest.
- `gguf_meta.qwen3_header`: a GGUF's header, read without loading tensors.
- `synthetic`: seeded or scripted Qwen3 checkpoints for tests and benchmarks.

This layer never imports the engine (its log capture aside), chat or server.
"""
