"""How much of its fine-tuning texts the adapter can have read: trained tokens over the tokens of the texts.

"In the fine-tuning texts" (probe group ``train``, QA half ``seen``) is not "trained on" when the
optimizer steps cover only part of them: with packing, the train step reads at most steps x batch x
accumulation x sequence length x ranks tokens, drawn at random from the packed texts. The ratio of that
budget to the texts' tokens is the expected number of passes over any one text (times its copies, for
the knowledge paragraphs written ``repeats`` times), and the report states it next to those groups.
"""

from __future__ import annotations

from typing import Any

from ptwiki_llm.config import Config


def fine_tuning_exposure(config: Config, train_texts: list[str], knowledge_copies: int) -> dict[str, Any]:
    from ptwiki_llm.models.refs import model_ref, token_counter

    train = config.train
    count = token_counter(model_ref(config, "base"), config)
    pool = sum(sum(count(train_texts[start : start + 256])) for start in range(0, len(train_texts), 256))
    budget = (train.max_steps * train.per_device_batch_size * train.gradient_accumulation_steps
              * train.max_seq_length * train.num_processes)
    passes = budget / pool if pool else 0.0  # above 1: several epochs
    return {"trained_tokens_at_most": budget, "fine_tuning_text_tokens": pool, "texts": len(train_texts),
            "expected_passes_per_text": round(passes, 4),
            "expected_passes_per_knowledge_paragraph": round(passes * knowledge_copies, 4)}
