"""Random-weight models of a public architecture's shape, written as staged model folders.

Speed and memory do not depend on the weights' values, so a GPU machine that cannot download a
checkpoint (and receives at most a few MiB of files) measures the real shape from random weights
written on its own disk. Each folder is what ``ptwiki-llm models stage`` leaves in the model store:
config, safetensors weights, a tokenizer and ``ptwiki_stage.json``, so the project's own loaders
(``models.runtime.load_causal_lm``, ``rag.embeddings.load_embedder``) read it unchanged.

The tokenizers are word-level over synthetic words ``w4 w5 ...``: one token per word, so a text of n
words is n tokens (plus the special tokens), which makes sequence lengths exact.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptwiki_llm.models.staging import STAGE_MANIFEST

# The public Llama-2-7B config (meta-llama/Llama-2-7b-hf), and a tiny model of the same architecture for CPU tests.
LLAMA_SHAPES: dict[str, dict[str, Any]] = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096},
    "tiny": {"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "vocab_size": 1000, "max_position_embeddings": 4096},
}
# intfloat/multilingual-e5-small (BertModel; the configured embedder of the GPU presets), and a tiny one.
E5_SHAPES: dict[str, dict[str, Any]] = {
    "small": {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 12, "num_attention_heads": 12,
              "vocab_size": 250037, "max_position_embeddings": 512},
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "vocab_size": 1000, "max_position_embeddings": 512},
}
FIRST_WORD_ID = 4  # ids below are (at most four) special tokens


def _word_tokenizer(vocab_size: int, specials: list[str], template: str, **special_names: str) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), vocab_size)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token=special_names["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    used = [name for name in specials if name in template]
    backend.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(name, vocab[name]) for name in used])
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special_names)


def _write_manifest(folder: Path, name: str, kind: str, seed: int) -> None:
    manifest = {
        "name": name,
        "ref": {"name": name, "path": None, "hub_id": None, "revision": None, "gguf_file": None},
        "source": {"kind": kind, "seed": seed, "note": "random weights of a public shape, for speed measurements"},
        "weights_sha256": None,  # not hashed: many GB of random numbers identify nothing
        "staged_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / STAGE_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def write_random_llama(folder: Path, shape: str, device: str = "cpu", dtype: str = "bfloat16", seed: int = 0) -> Path:
    """A LlamaForCausalLM of ``LLAMA_SHAPES[shape]`` with random weights (initialized on ``device``)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    shape_config = LLAMA_SHAPES[shape]
    config = LlamaConfig(**shape_config, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(str(folder), max_shard_size="5GB")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    tokenizer = _word_tokenizer(shape_config["vocab_size"], ["<unk>", "<s>", "</s>"], "<s> $A",
                                unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(str(folder))
    _write_manifest(folder, folder.name, "random-llama-" + shape, seed)
    return folder


def write_random_e5(folder: Path, shape: str, seed: int = 0) -> Path:
    """A sentence-transformers folder (BertModel, mean pooling, normalize) of ``E5_SHAPES[shape]``, E5 prompts."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    shape_config = E5_SHAPES[shape]
    torch.manual_seed(seed)
    config = BertConfig(**shape_config, type_vocab_size=2, pad_token_id=1, layer_norm_eps=1e-12)
    BertModel(config).save_pretrained(str(folder))
    tokenizer = _word_tokenizer(shape_config["vocab_size"], ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>",
                                unk_token="<unk>", bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                sep_token="</s>", pad_token="<pad>")
    tokenizer.model_max_length = shape_config["max_position_embeddings"]
    tokenizer.save_pretrained(str(folder))
    hidden = shape_config["hidden_size"]
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": shape_config["max_position_embeddings"],
                                      "do_lower_case": False},
        "config_sentence_transformers.json": {"prompts": {"query": "query: ", "passage": "passage: "},
                                              "default_prompt_name": None, "similarity_fn_name": "cosine"},
        "1_Pooling/config.json": {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True,
                                  "include_prompt": True},
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_manifest(folder, folder.name, "random-e5-" + shape, seed)
    return folder


def word_text(rng: random.Random, words: int, vocab_size: int) -> str:
    """``words`` random synthetic words: exactly that many tokens under the word-level tokenizers above."""
    return " ".join(f"w{rng.randrange(FIRST_WORD_ID, vocab_size)}" for _ in range(words))


def log_uniform_lengths(rng: random.Random, low: int, high: int, count: int) -> list[int]:
    """``count`` lengths spread log-uniformly over [low, high]: many short texts, some long ones."""
    return [round(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(count)]
