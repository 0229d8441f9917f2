"""SmoothQuant for the feed-forward output projections of a fused BERT-family ONNX graph, before int8.

ONNX Runtime's dynamic int8 quantizes each MatMul's input with one range per batch. The input of a layer's
second feed-forward projection (the GELU output) has a few channels tens of times larger than the median
(measured on E5-small: up to 70x), so one range wastes most int8 levels on them. SmoothQuant (Xiao et al.,
2023) moves that spread into the weights, where int8 is per output channel: ``x W = (x / s) (s W)``
with ``s_j = amax(x_j)^alpha / amax(W_j)^(1 - alpha)``. The float graph computes the same function (one
elementwise Mul per layer); only its quantization error changes.

The activation ranges come from seeded random sequences of the tokenizer's own vocabulary, not from any
corpus: the export stays a function of the staged weights alone (nothing read from data, nothing leaked
from an evaluation set). On E5-small it raises the smallest cosine to float32 vectors from 0.975 (plain
per-tensor int8) to 0.993 in batches of 32; embedding one text per session run (rag/embeddings.py), the
smallest cosine is 0.9957 and the worst FaQuAD recall@5 loss 0.006 (benchmarks/results/embedding_backends.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SmoothingRecipe:
    alpha: float = 0.7  # 0.5 kept too much spread in the activations, 0.9 moved too much into the weights
    calibration_sequences: int = 128
    min_tokens: int = 40
    max_tokens: int = 200
    seed: int = 0

    @property
    def tag(self) -> str:
        """Short name for export folders and manifests: changing any setting makes a new export."""
        return (f"sq{self.alpha:g}-r{self.calibration_sequences}x{self.min_tokens}-{self.max_tokens}"
                f"-s{self.seed}")


def feed_forward_outputs(model: Any) -> list[Any]:
    """The MatMul nodes of each layer's second feed-forward projection (``.../output/dense/MatMul``, not the
    attention output), with a constant weight."""
    constants = {init.name for init in model.graph.initializer}
    return [node for node in model.graph.node
            if node.op_type == "MatMul" and node.name.endswith("/output/dense/MatMul")
            and "/attention/" not in node.name and node.input[1] in constants]


def calibration_texts(tokenizer: Any, recipe: SmoothingRecipe, prefix: str) -> list[str]:
    """Seeded random token sequences over the tokenizer's vocabulary (its special tokens left out)."""
    rng = np.random.default_rng(recipe.seed)
    special = set(tokenizer.all_special_ids)
    vocab = sorted(token for token, index in tokenizer.get_vocab().items() if index not in special)
    texts = []
    for _ in range(recipe.calibration_sequences):
        length = int(rng.integers(recipe.min_tokens, recipe.max_tokens + 1))
        texts.append(prefix + tokenizer.convert_tokens_to_string(list(rng.choice(vocab, size=length))))
    return texts


def activation_ranges(model: Any, nodes: Sequence[Any], tokenizer: Any, texts: Sequence[str],
                      batch_size: int = 16) -> dict[str, np.ndarray]:
    """Per input channel, the largest |activation| each node's input reaches over ``texts`` (padding ignored)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for node in nodes:
        probe.graph.output.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [node.input[0] for node in nodes]
    ranges: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                            max_length=512, return_tensors="np")
        mask = encoded["attention_mask"].astype(bool)
        feeds = {"input_ids": encoded["input_ids"].astype(np.int64),
                 "attention_mask": encoded["attention_mask"].astype(np.int64)}
        for node, values in zip(nodes, session.run(names, feeds), strict=True):
            peak = np.abs(values[mask]).max(axis=0)
            ranges[node.name] = peak if node.name not in ranges else np.maximum(ranges[node.name], peak)
    return ranges


def smooth(model: Any, ranges: dict[str, np.ndarray], alpha: float) -> Any:
    """Scale each ranged node's weight rows by ``s`` and divide its input by ``s`` (an inserted Mul), in place."""
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    for node in [n for n in model.graph.node if n.name in ranges]:
        weight = numpy_helper.to_array(initializers[node.input[1]])
        weight_range = np.maximum(np.abs(weight).max(axis=1), 1e-8)
        scale = (np.maximum(ranges[node.name], 1e-8) ** alpha / weight_range ** (1.0 - alpha)).astype(np.float32)
        initializers[node.input[1]].CopyFrom(numpy_helper.from_array((weight * scale[:, None]).astype(np.float32),
                                                                     node.input[1]))
        inverse = f"{node.name}/smooth_inverse_scale"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        smoothed = f"{node.name}/smoothed_input"
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position, helper.make_node("Mul", [node.input[0], inverse], [smoothed],
                                                          name=f"{node.name}/smooth"))
        node.input[0] = smoothed
    return model


def smooth_feed_forward(source: Path, target: Path, tokenizer: Any, recipe: SmoothingRecipe, prefix: str) -> None:
    """``source`` graph -> ``target`` graph with its feed-forward output projections smoothed (still float32)."""
    import onnx

    model = onnx.load(str(source))
    nodes = feed_forward_outputs(model)
    if not nodes:
        raise ValueError(f"{source}: no feed-forward output MatMul ('.../output/dense/MatMul') to smooth; "
                         "the graph is not a fused BERT-family encoder")
    ranges = activation_ranges(model, nodes, tokenizer, calibration_texts(tokenizer, recipe, prefix))
    onnx.save(smooth(model, ranges, recipe.alpha), str(target))
