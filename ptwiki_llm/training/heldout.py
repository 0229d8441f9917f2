"""Held-out perplexity and bits per byte of a causal LM on whole texts.

Each text is scored in full: a start token (the tokenizer's BOS when it adds one, else EOS, the separator
the packed training data uses) is prepended, and windows of ``max_length`` tokens that overlap by one
token predict every text token exactly once. Bits per byte divide the summed negative log-likelihood (in
bits) by the texts' UTF-8 bytes, so it compares models with different tokenizers.
"""

from __future__ import annotations

import math
from typing import Any


def start_token(tokenizer: Any) -> int:
    probe = tokenizer("a")["input_ids"]
    if tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id:
        return tokenizer.bos_token_id
    return tokenizer.eos_token_id


def heldout_metrics(model: Any, tokenizer: Any, texts: list[str], max_length: int,
                    show_progress: bool = False) -> dict[str, float]:
    import torch

    from ptwiki_llm.progress import progress_bar

    if not texts:
        raise ValueError("no held-out texts to score")
    start = start_token(tokenizer)
    device = next(model.parameters()).device
    total_nll, total_tokens, total_bytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad(), progress_bar("held-out perplexity", len(texts), show_progress) as advance:
        for text in texts:
            ids = [start, *tokenizer(text, add_special_tokens=False)["input_ids"]]
            for begin in range(0, len(ids) - 1, max_length - 1):
                window = torch.tensor([ids[begin : begin + max_length]], device=device)
                logits = model(input_ids=window).logits.float()
                # a model sharded over GPUs returns its logits on the last one, not where the inputs went
                targets = window[0, 1:].to(logits.device)
                nll = torch.nn.functional.cross_entropy(logits[0, :-1], targets, reduction="sum")
                total_nll += nll.item()
                total_tokens += window.shape[1] - 1
            total_bytes += len(text.encode("utf-8"))
            advance(1)
    if was_training:
        model.train()
    loss = total_nll / total_tokens
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_byte": total_nll / math.log(2) / total_bytes,
        "tokens": float(total_tokens),
        "bytes": float(total_bytes),
    }
