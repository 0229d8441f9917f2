"""The embedding runtime: the 'auto' rule, the ONNX export made once into the model store, vectors close to
float32 torch, and a collection identity that names the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptwiki_llm.config import EmbeddingConfig
from ptwiki_llm.provenance import sha256_file
from ptwiki_llm.rag.embedding_backend import (
    CPU_CANDIDATES,
    MAX_RECALL5_LOSS,
    MEASURED_IN,
    Candidate,
    choose_backend,
)
from ptwiki_llm.rag.embeddings import Embedder
from ptwiki_llm.rag.stores import CollectionSpec, SchemaMismatchError

REPO = Path(__file__).resolve().parents[2]
PASSAGES = [
    "Lisboa — Geografia\nLisboa é a capital de Portugal e situa-se na margem norte do estuário do Tejo.",
    "Berlim\nBerlim é a capital e o estado mais populoso da Alemanha.",
    "Fotossíntese\nA fotossíntese é o processo pelo qual as plantas convertem luz em energia química.",
    "Copa do Mundo FIFA de 1970\nO Brasil venceu a Copa do Mundo de 1970, no México.",
]
QUESTIONS = ["Qual é a capital de Portugal?", "Quem ganhou a Copa de 1970?", "Como as plantas produzem energia?"]


# --- the rule ------------------------------------------------------------------------------------------------


def pick(backend="auto", quantization="auto", device="cpu", vnni=True, **kw) -> tuple[str, str]:
    choice = choose_backend(backend, quantization, device, vnni, **kw)
    return choice.backend, choice.quantization


MEASURED = (Candidate("onnx", "int8", needs_vnni=True, recall5_loss=0.0),
            Candidate("onnx", "none", needs_vnni=False, recall5_loss=0.0))


def test_auto_takes_int8_onnx_only_where_the_cpu_has_vnni():
    assert pick(vnni=True, candidates=MEASURED) == ("onnx", "int8")
    assert pick(vnni=False, candidates=MEASURED) == ("onnx", "none")


def test_auto_never_takes_an_unmeasured_candidate():
    unmeasured = (Candidate("onnx", "int8", needs_vnni=True, recall5_loss=None), *MEASURED[1:])
    assert pick(vnni=True, candidates=unmeasured) == ("onnx", "none")
    assert pick(vnni=True, candidates=unmeasured[:1]) == ("torch", "none")


def test_auto_takes_onnx_float32_only_where_torch_would_compute_in_float32():
    float32_only = (Candidate("onnx", "none", needs_vnni=False, recall5_loss=0.0, only_without_bf16=True),)
    assert pick(candidates=float32_only, torch_bf16=False) == ("onnx", "none")
    assert pick(candidates=float32_only, torch_bf16=True) == ("torch", "none")  # bf16 autocast is faster there


def test_auto_with_todays_measurements():
    """int8 is within the limit and the fastest: any CPU with VNNI gets it; without VNNI, ONNX float32 where torch
    would compute in float32, torch where it has bf16 autocast."""
    assert pick(vnni=True, torch_bf16=False) == ("onnx", "int8")
    assert pick(vnni=True, torch_bf16=True) == ("onnx", "int8")
    assert pick(vnni=False, torch_bf16=False) == ("onnx", "none")
    assert pick(vnni=False, torch_bf16=True) == ("torch", "none")


def test_auto_keeps_torch_off_the_cpu():
    assert pick(device="cuda") == ("torch", "none")
    assert pick(device="mps") == ("torch", "none")


def test_auto_skips_a_candidate_that_loses_more_than_the_allowed_recall():
    lossy = (Candidate("onnx", "int8", needs_vnni=True, recall5_loss=MAX_RECALL5_LOSS + 0.005),
             Candidate("onnx", "none", needs_vnni=False, recall5_loss=0.0))
    assert pick(candidates=lossy) == ("onnx", "none")
    at_limit = (Candidate("onnx", "int8", needs_vnni=True, recall5_loss=MAX_RECALL5_LOSS),)
    assert pick(candidates=at_limit) == ("onnx", "int8")
    assert pick(candidates=lossy[:1]) == ("torch", "none")  # nothing qualifies: torch


def test_auto_honours_an_explicit_quantization():
    assert pick(quantization="none", candidates=MEASURED) == ("onnx", "none")
    assert pick(quantization="int8", vnni=False, candidates=MEASURED) == ("torch", "none")  # no int8 without VNNI


def test_explicit_backends_are_kept_and_impossible_ones_refused():
    assert pick("torch", vnni=True) == ("torch", "none")
    assert pick("onnx", vnni=False) == ("onnx", "none")
    assert pick("onnx", "int8", vnni=False) == ("onnx", "int8")
    with pytest.raises(ValueError, match="needs backend onnx"):
        pick("torch", "int8")
    with pytest.raises(ValueError, match="runs on the CPU"):
        pick("onnx", device="cuda")


def test_the_rule_uses_the_measured_recall_losses():
    """CPU_CANDIDATES' losses are the result file's, and a candidate it does not measure has none."""
    result = json.loads((REPO / MEASURED_IN).read_text())
    measured = {(c["backend"], c["quantization"]): c["recall5_loss"] for c in result["auto_rule"]["candidates"]}
    ours = {(c.backend, c.quantization): c.recall5_loss for c in CPU_CANDIDATES}
    assert {k: ours[k] for k in measured} == pytest.approx(measured)
    assert all(loss is None for k, loss in ours.items() if k not in measured)
    assert result["auto_rule"]["max_recall5_loss"] == MAX_RECALL5_LOSS


# --- the ONNX runtime on the staged embedder -------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-store")


@pytest.fixture(scope="module")
def embedders(e5_dir, store) -> dict[str, Embedder]:
    make = lambda **kw: Embedder(e5_dir, "e5", EmbeddingConfig(device="cpu", bf16_autocast=False, **kw), store)  # noqa: E731
    return {"torch": make(backend="torch"), "onnx": make(backend="onnx", quantization="none"),
            "int8": make(backend="onnx", quantization="int8")}


@pytest.mark.slow  # two ONNX exports of the staged embedder (~30 s on 2 cores)
def test_the_export_is_made_once_into_the_model_store_and_reused(embedders, e5_dir, store, monkeypatch):
    exports = sorted(p.name for p in store.iterdir() if p.is_dir())
    assert len(exports) == 2 and all(name.startswith("e5-onnx-") for name in exports)
    int8 = embedders["int8"].onnx_export
    assert int8.quantization == "int8" and int8.model_sha256 == sha256_file(int8.model_path)
    assert sorted(p.name for p in int8.folder.iterdir()) == ["model.onnx", "ptwiki_export.json"]

    import ptwiki_llm.rag.onnx_export as onnx_export

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "_export", no_second_export)
    again = Embedder(e5_dir, "e5", EmbeddingConfig(device="cpu", backend="onnx", quantization="int8"), store)
    assert again.onnx_export == int8
    assert again.identity == embedders["int8"].identity


@pytest.mark.slow  # two ONNX exports of the staged embedder (~30 s on 2 cores)
def test_onnx_vectors_are_unit_float32_and_close_to_float32_torch(embedders):
    reference = embedders["torch"].embed_passages(PASSAGES)
    # int8 with smoothed feed-forward inputs: min 0.993 on 762 sample passages (plain int8: 0.975)
    for name, floor in (("onnx", 0.9999), ("int8", 0.99)):
        vectors = embedders[name].embed_passages(PASSAGES)
        assert vectors.dtype == np.float32 and vectors.shape == reference.shape
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert float((vectors * reference).sum(axis=1).min()) > floor, name


@pytest.mark.slow  # two ONNX exports of the staged embedder (~30 s on 2 cores)
def test_an_onnx_vector_does_not_depend_on_the_texts_embedded_with_it(embedders):
    # dynamic int8 takes one activation range per session run: batched, a neighbour would move the vector by ~1e-3
    for name in ("onnx", "int8"):
        together = embedders[name].embed_passages(PASSAGES)
        alone = np.stack([embedders[name].embed_passages([passage])[0] for passage in PASSAGES[::-1]][::-1])
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow  # two ONNX exports of the staged embedder (~30 s on 2 cores)
def test_onnx_retrieves_like_float32_torch(embedders):
    for embedder in embedders.values():
        scores = embedder.embed_queries(QUESTIONS) @ embedder.embed_passages(PASSAGES).T
        assert scores.argmax(axis=1).tolist() == [0, 3, 2], embedder.identity


@pytest.mark.slow  # two ONNX exports of the staged embedder (~30 s on 2 cores)
def test_the_collection_identity_names_the_runtime(embedders):
    torch_id, int8_id = embedders["torch"].identity, embedders["int8"].identity
    assert torch_id == {"backend": "torch", "quantization": "none", "model_sha256": None}
    assert int8_id["backend"] == "onnx" and int8_id["quantization"] == "int8" and len(int8_id["model_sha256"]) == 64
    keys = {name: e.collection_key for name, e in embedders.items()}
    assert keys["torch"] == "e5" and len(set(keys.values())) == 3  # torch collections keep their names
    assert (embedders["torch"].precision, embedders["onnx"].precision, embedders["int8"].precision) == (
        "float32", "float32", "int8")

    spec = CollectionSpec(name="c", dimension=384, embedder="e5", embedding=embedders["int8"].fingerprint)
    with pytest.raises(SchemaMismatchError, match="embedding"):
        spec.check(json.loads(CollectionSpec(name="c", dimension=384, embedder="e5",
                                             embedding=embedders["onnx"].fingerprint).description()), "here")
    spec.check(json.loads(spec.description()), "here")


def test_the_onnx_session_does_not_spin_between_operators(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from ptwiki_llm.rag.onnx_export import onnx_session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    options = onnx_session(tmp_path / "m.onnx", threads=2).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


def test_without_a_model_store_auto_stays_on_torch_and_onnx_is_refused(e5_dir):
    assert Embedder(e5_dir, "e5", EmbeddingConfig(device="cpu")).identity["backend"] == "torch"
    with pytest.raises(ValueError, match="model store"):
        Embedder(e5_dir, "e5", EmbeddingConfig(device="cpu", backend="onnx"))


@pytest.mark.slow  # two ONNX exports of the staged embedder (~30 s on 2 cores)
def test_the_int8_export_is_smoothed_and_says_its_recipe(embedders):
    import onnx

    from ptwiki_llm.rag.onnx_export import INT8_RECIPE

    int8 = embedders["int8"].onnx_export
    manifest = json.loads((int8.folder / "ptwiki_export.json").read_text())
    assert INT8_RECIPE.tag in int8.folder.name and INT8_RECIPE.tag in manifest["int8_recipe"]
    graph = onnx.load(str(int8.model_path), load_external_data=False).graph
    smoothing = [node for node in graph.node if node.name.endswith("/smooth")]
    assert len(smoothing) == 12  # one per layer of E5-small


def test_export_drops_onnxruntime_tool_chatter_but_not_its_errors_or_other_logs(caplog):
    """The optimizer and quantizer log per pattern and per tensor, on the root logger and on loggers named after
    their modules: quiet during the export, errors kept, and everything as before afterwards."""
    import logging

    from ptwiki_llm.rag.onnx_export import _quiet_onnxruntime

    def record(logger: str, level: int, path: str) -> None:  # as onnxruntime's logging calls create them
        logging.getLogger(logger or None).handle(logging.makeLogRecord(
            {"name": logger or "root", "levelno": level, "levelname": logging.getLevelName(level), "pathname": path,
             "msg": f"{logging.getLevelName(level)} {logger} {path.rsplit('/', 1)[-1]}"}))

    quantizer = "/site-packages/onnxruntime/quantization/onnx_quantizer.py"
    fusion = "/site-packages/onnxruntime/transformers/fusion_base.py"
    caplog.set_level(logging.INFO)
    with _quiet_onnxruntime():
        record("", logging.INFO, quantizer)
        record("", logging.WARNING, quantizer)
        record("fusion_base", logging.INFO, fusion)
        record("", logging.ERROR, quantizer)
        logging.getLogger("ptwiki_llm.rag.onnx_export").info("ours")
    record("", logging.INFO, quantizer)
    record("fusion_base", logging.INFO, fusion)
    assert [r.getMessage() for r in caplog.records] == [
        "ERROR  onnx_quantizer.py", "ours", "INFO  onnx_quantizer.py", "INFO fusion_base fusion_base.py"]
