"""What an index collection holds, fingerprinted: the collection is named after it, so two runs share a
collection only when every input of its vectors and of its membership is the same.

- the data: the ingested corpus (its hash) and which of its articles validation accepted (the hash of the
  quarantined ids), so a validation change indexes into a new collection that holds no quarantined article;
- the embedder: its files (weights, tokenizer, pooling and normalisation modules), the prompt texts it
  embeds passages and queries with, and the final normalisation;
- the chunking settings (the chunker uses the embedder's tokenizer, covered by the files' hash).

- the embedding runtime when it is not torch (ONNX Runtime, float32 or int8: ``Embedder.fingerprint``, which
  holds the exported model's hash), since its vectors differ measurably from torch's.

The numeric precision of the torch embedding (bf16 autocast or float32) is recorded with the run but is not part of
the identity: the two agree to a cosine of 0.99999 (benchmarks/embedding_precision.py), so a collection indexed
on one machine can be resumed on another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ptwiki_llm.config import ChunkingConfig, EmbeddingConfig
from ptwiki_llm.provenance import sha256_file, sha256_json


def model_files_sha256(folder: Path) -> str:
    """One hash over every file of a model folder that can change its output (documentation files left out)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() not in {".md", ".txt"}
                       and not p.name.startswith(".")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def ids_sha256(ids: Iterable[int]) -> str:
    return sha256_json(sorted(int(i) for i in ids))


def prompt_text(prompts: dict[str, str], name: str) -> str:
    return prompts.get(name, "") if name else ""


@dataclass(frozen=True)
class IndexIdentity:
    dataset_sha256: str
    quarantined_sha256: str
    embedder: str
    embedder_files_sha256: str
    passage_prompt: str
    query_prompt: str
    normalize: bool
    chunking: dict[str, Any] = field(default_factory=dict)
    embedding_runtime: str | None = None  # None: torch (the identity, and so the name, of torch-built collections)

    def fingerprint(self) -> str:
        """12 hex of the whole identity."""
        return sha256_json(asdict(self))[:12]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fingerprint": self.fingerprint()}


def index_identity(dataset_sha256: str, quarantined: Iterable[int], embedder_name: str, embedder_dir: Path,
                   prompts: dict[str, str], embedding: EmbeddingConfig, chunking: ChunkingConfig,
                   embedding_runtime: str | None = None) -> IndexIdentity:
    """``prompts``: the embedder's prompt name -> text table (the model's own, completed by the config's)."""
    return IndexIdentity(
        dataset_sha256=dataset_sha256,
        quarantined_sha256=ids_sha256(quarantined),
        embedder=embedder_name,
        embedder_files_sha256=model_files_sha256(embedder_dir),
        passage_prompt=prompt_text(prompts, embedding.passage_prompt),
        query_prompt=prompt_text(prompts, embedding.query_prompt),
        normalize=embedding.normalize,
        chunking=chunking.model_dump(),
        embedding_runtime=embedding_runtime,
    )
