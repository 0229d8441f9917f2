"""Which runtime computes the embeddings (rag.embedding.backend / quantization), and the rule behind 'auto'.

'auto' takes, on a CPU, the fastest measured candidate whose retrieval quality stays within
``MAX_RECALL5_LOSS`` of float32 torch and whose hardware need the CPU meets; elsewhere (CUDA, MPS) torch.
The losses below are measured (FaQuAD dev and train, the largest recall@5 drop over both files and over the
vector and hybrid modes: hybrid is the default retrieval mode, vector the other one a user can pick) and kept
equal to ``MEASURED_IN`` by a test; a candidate without a measured loss is never chosen by 'auto'.
benchmarks/embedding_precision.py measures all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_RECALL5_LOSS = 0.01
MEASURED_IN = "benchmarks/results/embedding_backends.json"
# int8 with smoothed feed-forward inputs, one text per session run: recall@5 vector dev 0.952 -> 0.952, train
# 0.925 -> 0.919, hybrid dev 1.000 -> 1.000, train 0.963 -> 0.962: within the limit
RECALL5_LOSS_INT8 = 0.006
RECALL5_LOSS_ONNX_FLOAT32 = 0.0  # the same recall@k and MRR as float32 torch on every file and mode


@dataclass(frozen=True)
class Candidate:
    backend: str
    quantization: str
    needs_vnni: bool
    recall5_loss: float | None  # float32 torch recall@5 minus this one's, worst of FaQuAD dev/train; None: unmeasured
    only_without_bf16: bool = False  # slower than torch's bf16 autocast where the CPU has bf16


# Fastest first (in MEASURED_IN: int8 3.37x, bf16 autocast 2.10x, ONNX float32 1.69x float32 torch). int8 is only
# fast with VNNI; ONNX float32 only beats torch where torch computes in float32 (no bf16 in the CPU, or
# rag.embedding.bf16_autocast=false).
CPU_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("onnx", "int8", needs_vnni=True, recall5_loss=RECALL5_LOSS_INT8),
    Candidate("onnx", "none", needs_vnni=False, recall5_loss=RECALL5_LOSS_ONNX_FLOAT32, only_without_bf16=True),
)


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # 'torch' or 'onnx'
    quantization: str  # 'none' or 'int8' (onnx only)


def choose_backend(backend: str, quantization: str, device: str, has_vnni: bool, torch_bf16: bool = False,
                   candidates: tuple[Candidate, ...] = CPU_CANDIDATES,
                   max_loss: float = MAX_RECALL5_LOSS) -> BackendChoice:
    """Resolve rag.embedding.backend and .quantization for ``device``; explicit settings are kept as given.
    ``torch_bf16``: torch would encode with bf16 autocast here (rag.embedding.bf16_autocast on this CPU)."""
    if backend == "torch":
        if quantization == "int8":
            raise ValueError("rag.embedding.quantization=int8 needs backend onnx (torch computes in float32/bf16)")
        return BackendChoice("torch", "none")
    if backend == "onnx" and device != "cpu":
        raise ValueError(f"rag.embedding.backend=onnx runs on the CPU; the embedding device is {device!r}. "
                         "Set rag.embedding.device=cpu, or backend=auto/torch")
    if backend == "onnx":
        return BackendChoice("onnx", quantization if quantization != "auto" else ("int8" if has_vnni else "none"))
    if backend != "auto":
        raise ValueError(f"unknown rag.embedding.backend {backend!r}: expected auto, torch or onnx")
    if device != "cpu":
        return BackendChoice("torch", "none")
    for candidate in candidates:
        measured_and_close = candidate.recall5_loss is not None and candidate.recall5_loss <= max_loss
        if not measured_and_close or (candidate.needs_vnni and not has_vnni):
            continue
        if candidate.only_without_bf16 and torch_bf16:
            continue
        if quantization not in ("auto", candidate.quantization):
            continue
        return BackendChoice(candidate.backend, candidate.quantization)
    return BackendChoice("torch", "none")
