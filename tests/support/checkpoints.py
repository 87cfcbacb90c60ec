"""What synthetic checkpoints are checked against: Qwen3-0.6B's own config.json and
parameter count, and a checkpoint folder loaded into Hugging Face transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN3_0_6B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
# 151936*1024 embedding + 28 * 15,730,944 per layer + 1024 final norm (lm_head tied).
PARAMS_0_6B = 596_049_920


def load_in_transformers(folder: Path) -> Any:
    """The checkpoint in `folder` as transformers' model, float32, in eval mode."""
    import torch
    import transformers
    from packaging.version import Version  # transformers' own dependency

    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name warns).
    float32 = (
        {"dtype": torch.float32}
        if Version(transformers.__version__) >= Version("4.56")
        else {"torch_dtype": torch.float32}
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, **float32)
    return model.eval()
