"""Sentence-transformers embeddings from local files: batched, normalized, E5 query/passage prompts.

Computed by torch (float32 or bf16 autocast) or by ONNX Runtime on an export of the same weights
(float32 or int8-quantized), as rag.embedding.backend / quantization resolve for this machine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptwiki_llm.config import Config, EmbeddingConfig
from ptwiki_llm.models.refs import model_ref, require_model_dir
from ptwiki_llm.models.runtime import bf16_autocast, cpu_has_vnni, pick_device
from ptwiki_llm.provenance import sha256_json
from ptwiki_llm.rag.embedding_backend import BackendChoice, choose_backend


class Embedder:
    """One sentence-transformers model; ``embed_passages`` for the index, ``embed_queries`` for questions."""

    def __init__(self, model_dir: Path, name: str, cfg: EmbeddingConfig, model_store: Path | None = None) -> None:
        """``model_store``: where an ONNX export is made once and reused; without one, 'auto' stays on torch."""
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.cfg = cfg
        self.model_dir = model_dir
        self.device = pick_device(cfg.device, "rag.embedding.device", ("cuda", "mps"))
        # transformers logs a load report for the unused pooler weights of E5; it is noise here.
        logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
        # ... and with that level, transformers 5.24 runs its tensor-parallel plan check, which lists every layer
        logging.getLogger("transformers.distributed.tensor_parallel").setLevel(logging.ERROR)
        self.model = SentenceTransformer(str(model_dir), device=self.device, local_files_only=True)
        # E5 needs "query: " / "passage: " prefixes; a model's own config names them, else rag.embedding.prompt_texts
        self.model.prompts = {**cfg.prompt_texts, **(self.model.prompts or {})}
        missing = [p for p in (cfg.query_prompt, cfg.passage_prompt) if p and p not in self.model.prompts]
        if missing:
            raise ValueError(
                f"embedder {name!r} ({model_dir}) defines no prompt(s) {missing} "
                f"(it has {sorted(self.model.prompts)}); add them under rag.embedding.prompt_texts, or set "
                "query_prompt / passage_prompt to '' for none"
            )
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension: int = int(dimension())
        self.max_seq_length: int = int(self.model.max_seq_length)
        choice = (BackendChoice("torch", "none") if cfg.backend == "auto" and model_store is None
                  else choose_backend(cfg.backend, cfg.quantization, self.device, cpu_has_vnni(),
                                      torch_bf16=bf16_autocast(cfg.bf16_autocast, self.device)))
        self.backend, self.quantization = choice.backend, choice.quantization
        self.onnx_export = None
        self._sessions: list[Any] = []
        if self.backend == "onnx":
            import torch

            from ptwiki_llm.rag.onnx_export import ensure_onnx_export, onnx_session

            if model_store is None:
                raise ValueError("the onnx embedding backend needs a model store to export into (config.model_store)")
            self.onnx_export = ensure_onnx_export(model_dir, name, model_store, self.quantization)
            # one single-threaded session per core, each embedding its share of the texts: one short text keeps
            # two threads of one session less busy than two texts on two cores (1.22x on 315 sample passages,
            # int8, the same vectors)
            self._sessions = [onnx_session(self.onnx_export.model_path, 1) for _ in range(torch.get_num_threads())]
        self.bf16_autocast = self.backend == "torch" and bf16_autocast(cfg.bf16_autocast, self.device)

    @property
    def precision(self) -> str:
        """How vectors are computed, for the index's record: 'bf16-autocast', 'float32' or 'int8' (onnx)."""
        if self.backend == "onnx":
            return "int8" if self.quantization == "int8" else "float32"
        return "bf16-autocast" if self.bf16_autocast else "float32"

    @property
    def identity(self) -> dict[str, str | None]:
        """What the vectors depend on beyond the embedder's name: the runtime, its quantization and the
        exported model's hash (None for torch, which reads the staged weights themselves) and, for ONNX, how
        many texts one session run takes (int8 vectors depend on it)."""
        return {"backend": self.backend, "quantization": self.quantization,
                "model_sha256": self.onnx_export.model_sha256 if self.onnx_export else None,
                **({"texts_per_run": "1"} if self.onnx_export else {})}  # _encode_onnx

    @property
    def fingerprint(self) -> str | None:
        return embedding_fingerprint(self.identity)

    @property
    def collection_key(self) -> str:
        """The embedder part of a collection name: vectors of another runtime never share a collection."""
        return f"{self.name}_{self.backend}_{self.fingerprint}" if self.fingerprint else self.name

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def _encode(self, texts: Sequence[str], prompt_name: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._sessions:
            vectors = self._encode_onnx(texts, prompt_name)
        else:
            import torch

            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16_autocast):
                vectors = self.model.encode(
                    list(texts),
                    prompt_name=prompt_name or None,
                    batch_size=self.cfg.batch_size,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.cfg.normalize:  # in float32, so that bf16-computed vectors are unit length too
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def _encode_onnx(self, texts: Sequence[str], prompt_name: str) -> np.ndarray:
        """As SentenceTransformer.encode (prompt prepended, same tokenization), one text per session run.

        Dynamic int8 quantizes each MatMul input with one range per run, so a text's vector would depend on
        the texts batched with it; alone, it does not, and it gets a range of its own (1 - mean cosine to
        float32 on sample passages: 0.0015 vs 0.0023 in batches of 32). No padding is computed either, and
        the activations stay in cache: int8 on 128 sample passages took 4.6 s, 7.5 s in batches of 32 sorted by
        length."""
        prompt = self.model.prompts[prompt_name] if prompt_name else ""
        # tokenized here, in one thread: a fast tokenizer called from several threads at once can fail
        # ("Already borrowed") when its padding/truncation settings are set per call
        inputs = []
        for text in texts:
            features = self.model.preprocess([prompt + text])
            inputs.append({key: features[key].numpy() for key in ("input_ids", "attention_mask")})
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        workers = min(len(self._sessions), len(inputs))

        def embed_share(worker: int) -> None:  # ONNX Runtime releases the GIL while a session runs
            session = self._sessions[worker]
            for i in range(worker, len(inputs), workers):
                vectors[i] = session.run(None, inputs[i])[0][0]

        if workers == 1:
            embed_share(0)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(embed_share, range(workers)))  # list(): a worker's exception is raised here
        return vectors

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.cfg.passage_prompt)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.cfg.query_prompt)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]


def embedding_fingerprint(identity: dict[str, str | None]) -> str | None:
    """8 hex of an Embedder.identity for collection names and specs; None for torch, whose vectors the
    collection's embedder name already identifies (collections indexed before other runtimes keep their names)."""
    if identity["backend"] == "torch":
        return None
    return sha256_json(identity)[:8]


def load_embedder(config: Config) -> Embedder:
    ref = model_ref(config, config.rag.embedding.model)
    return Embedder(require_model_dir(ref, config), ref.name, config.rag.embedding, config.model_store)
