"""A random-weight Llama small enough to build in milliseconds, saved as a model folder (config.json + safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_llama(folder: Path | None = None, layers: int = 2, seed: int = 0) -> Any:
    """A LlamaForCausalLM (hidden 32, ``layers`` decoder layers, vocabulary 64), written to ``folder`` if given."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    if folder is not None:
        model.save_pretrained(str(folder))
    return model
