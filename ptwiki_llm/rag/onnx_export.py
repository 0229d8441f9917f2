"""A sentence-transformers model as one ONNX graph in the model store, exported once and reused.

The graph maps token ids and attention mask to the model's sentence embedding (the whole
sentence-transformers module chain). It is exported with eager attention so that ONNX Runtime's
transformer optimizer can fuse each layer's attention, layer norms and GELU into its CPU kernels;
``int8`` then smooths each layer's feed-forward output projection (``smoothquant.py``) and adds ONNX
Runtime's dynamic quantization of the weights, per output channel (activations are quantized per batch
at run time), which multiplies in int8 through VNNI where the CPU has it. Everything is made from the
staged local weights; nothing is downloaded and no corpus is read. The export folder's name holds the
source weights' hash and the int8 recipe, so new weights or a new recipe get a new export.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptwiki_llm.provenance import sha256_file
from ptwiki_llm.rag.smoothquant import SmoothingRecipe, smooth_feed_forward

logger = logging.getLogger(__name__)

EXPORT_MANIFEST = "ptwiki_export.json"
MODEL_FILE = "model.onnx"
OPSET = 17
INT8_RECIPE = SmoothingRecipe()


@dataclass(frozen=True)
class OnnxExport:
    folder: Path
    quantization: str  # 'none' or 'int8'
    model_sha256: str  # of model.onnx: what the vectors depend on
    source_weights_sha256: str

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE


def export_folder(store: Path, name: str, quantization: str, source_weights_sha256: str) -> Path:
    recipe = f"{quantization}-{INT8_RECIPE.tag}" if quantization == "int8" else quantization
    return store / f"{name}-onnx-{recipe}-{source_weights_sha256[:12]}"


def ensure_onnx_export(model_dir: Path, name: str, store: Path, quantization: str) -> OnnxExport:
    """The ONNX export of the sentence-transformers model in ``model_dir`` in ``store``: made once, then reused."""
    from ptwiki_llm.models.staging import weights_sha256

    source_sha = weights_sha256(model_dir)
    target = export_folder(store, name, quantization, source_sha)
    if not (target / EXPORT_MANIFEST).is_file():
        store.mkdir(parents=True, exist_ok=True)
        with (store / f".{target.name}.lock").open("w") as lock:  # parallel jobs on a shared store export once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / EXPORT_MANIFEST).is_file():
                _export(model_dir, target, quantization, source_sha)
    manifest = json.loads((target / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    return OnnxExport(target, manifest["quantization"], manifest["model_sha256"], manifest["source_weights_sha256"])


def _export(model_dir: Path, target: Path, quantization: str, source_sha: str) -> None:
    import onnxruntime
    import torch

    if quantization not in ("none", "int8"):
        raise ValueError(f"unknown ONNX quantization {quantization!r}: expected 'none' or 'int8'")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        logger.info("exporting the embedder to ONNX (%s) in %s (once)", quantization, target)
        started = time.perf_counter()
        traced, fused = partial / "traced.onnx", partial / "fused.onnx"
        _export_float32(model_dir, traced)
        with _quiet_onnxruntime():
            _fuse(model_dir, traced, fused)
        traced.unlink()
        if quantization == "int8":
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic
            from transformers import AutoTokenizer

            smoothed = partial / "smoothed.onnx"
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            smooth_feed_forward(fused, smoothed, tokenizer, INT8_RECIPE, _passage_prefix(model_dir))
            fused.unlink()
            # the fused graph has contrib ops that shape inference cannot type; their tensors are float32
            with _quiet_onnxruntime():
                quantize_dynamic(smoothed, partial / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            smoothed.unlink()
        else:
            fused.rename(partial / MODEL_FILE)
        manifest = {
            "quantization": quantization,
            "int8_recipe": (f"SmoothQuant feed-forward outputs ({INT8_RECIPE.tag}), dynamic int8 per-channel weights"
                            if quantization == "int8" else None),
            "model_sha256": sha256_file(partial / MODEL_FILE),
            "source_weights_sha256": source_sha,
            "opset": OPSET,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (partial / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        for item in partial.iterdir():  # a shared store: readable by the group's other jobs and users
            item.chmod(0o644)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        logger.info("exported the embedder to ONNX (%s) in %.0f s", quantization, time.perf_counter() - started)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


class _ChatterFilter(logging.Filter):
    """Drops the records under ERROR that come from ONNX Runtime's Python tools."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or f"{os.sep}onnxruntime{os.sep}" not in record.pathname


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """ONNX Runtime's optimizer and quantizer log a line per fused pattern and per tensor (84 of the index step's
    110 log lines on the first run), on the root logger and on loggers named after their modules ('fusion_base',
    'onnx_model'): none of it says anything a user can act on. The filter sits on the root logger and its
    handlers, which every record reaches; errors still show."""
    quiet = _ChatterFilter()
    root = logging.getLogger()
    filtered = [root, *root.handlers]
    for item in filtered:
        item.addFilter(quiet)
    try:
        yield
    finally:
        for item in filtered:
            item.removeFilter(quiet)


def _passage_prefix(model_dir: Path) -> str:
    """The text the model puts before a passage (E5: 'passage: '), so calibration looks like indexing."""
    settings = model_dir / "config_sentence_transformers.json"
    if not settings.is_file():
        return ""
    return str(json.loads(settings.read_text(encoding="utf-8")).get("prompts", {}).get("passage", ""))


def _sentence_embedding_module(st_model: Any) -> Any:
    """token ids + mask -> the sentence-transformers pipeline's 'sentence_embedding' (a traceable module)."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = st_model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    return SentenceEmbedding().eval()


def _export_float32(model_dir: Path, path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True,
                                   model_kwargs={"attn_implementation": "eager"})  # the pattern ORT fuses
    sample = st_model.preprocess(["passage: uma frase de exemplo", "passage: outra"])
    inputs = (sample["input_ids"], sample["attention_mask"])
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            _sentence_embedding_module(st_model), inputs, str(path), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "sentence_embedding": {0: "batch"}},
        )


def _fuse(model_dir: Path, source: Path, target: Path) -> None:
    """ONNX Runtime's BERT-family optimizer: fused attention, skip-layer-norm and bias-GELU kernels."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    optimized = optimize_model(str(source), model_type="bert", num_heads=int(config["num_attention_heads"]),
                               hidden_size=int(config["hidden_size"]))
    optimized.save_model_to_file(str(target))


def onnx_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # With more than one thread, spinning workers wait for the next operator by burning their core: with one
    # short text per run that is most of the time, and where other processes share the cores it starved them and
    # us (one two-threaded session on a shared 2-core machine, 762 passages: int8 1.1x float32 torch with
    # spinning, 3.3x without). The embedder now runs single-threaded sessions, where nothing spins.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
