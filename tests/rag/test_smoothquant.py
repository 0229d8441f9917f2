"""SmoothQuant changes where the spread of the feed-forward inputs lives, never the float function."""

from __future__ import annotations

import numpy as np
import pytest

from ptwiki_llm.rag.smoothquant import SmoothingRecipe, calibration_texts, feed_forward_outputs, smooth

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _layer_graph(weight: np.ndarray) -> onnx.ModelProto:
    """x -> .../output/dense/MatMul(x, W) -> y, named as the fused E5 graph names a layer's second projection."""
    name = "/model/encoder/layer.0/output/dense/MatMul"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name=name),
         helper.make_node("MatMul", ["x2", "W2"], ["y2"], name="/model/encoder/layer.0/attention/output/dense/MatMul")],
        "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]]),
                  helper.make_tensor_value_info("x2", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.eye(2, dtype=np.float32), "W2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x, "x2": np.zeros((len(x), 2), np.float32)})[0]


def test_only_the_feed_forward_output_projection_is_picked():
    model = _layer_graph(np.ones((4, 3), np.float32))
    assert [node.name for node in feed_forward_outputs(model)] == ["/model/encoder/layer.0/output/dense/MatMul"]


def test_smoothing_keeps_the_function_and_flattens_the_input_spread():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(8, 5)).astype(np.float32)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    x[:, 3] *= 60.0  # one outlier channel, as after GELU in E5's middle layers
    model = _layer_graph(weight)
    before = _run(model, x)
    ranges = {"/model/encoder/layer.0/output/dense/MatMul": np.abs(x).max(axis=0)}
    smoothed = smooth(model, ranges, alpha=0.7)
    np.testing.assert_allclose(_run(smoothed, x), before, rtol=1e-5, atol=1e-4)
    (inverse,) = [numpy_helper.to_array(i) for i in smoothed.graph.initializer if i.name.endswith("inverse_scale")]
    spread = lambda a: float(a.max() / np.median(a))  # noqa: E731
    assert spread(np.abs(x * inverse).max(axis=0)) < spread(np.abs(x).max(axis=0)) / 5


class _Vocab:
    all_special_ids = (0, 1)

    def get_vocab(self) -> dict[str, int]:
        return {"<s>": 0, "</s>": 1, **{f"tok{i}": i + 2 for i in range(50)}}

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)


def test_calibration_is_seeded_random_vocabulary_without_special_tokens():
    recipe = SmoothingRecipe(calibration_sequences=4, min_tokens=3, max_tokens=6)
    texts = calibration_texts(_Vocab(), recipe, "passage: ")
    assert texts == calibration_texts(_Vocab(), recipe, "passage: ")
    assert texts != calibration_texts(_Vocab(), SmoothingRecipe(calibration_sequences=4, min_tokens=3, max_tokens=6,
                                                                seed=1), "passage: ")
    assert all(t.startswith("passage: ") and "<s>" not in t and 3 <= len(t.split()) - 1 <= 6 for t in texts)
    assert SmoothingRecipe().tag != SmoothingRecipe(alpha=0.5).tag
