"""Shared by the benchmark scripts: staged-asset lookup and writing results."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptwiki_llm.provenance import machine_info, package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def find_asset(name: str) -> Path:
    """``name`` inside the first PTWIKI_ASSET_PATH folder that has it (benchmarks need staged data)."""
    folders = [Path(p) for p in os.environ.get("PTWIKI_ASSET_PATH", "").split(os.pathsep) if p]
    for folder in folders:
        if (folder / name).exists():
            return folder / name
    raise SystemExit(f"asset {name!r} not found: set PTWIKI_ASSET_PATH (e.g. ../shared); looked in {folders}")


def describe_machine(machine: dict[str, Any]) -> str:
    """'AMD EPYC, 2 usable cores, with native bf16 (AVX512-BF16/AMX)': what a precision result depends on."""
    bf16 = "with" if machine["cpu_native_bf16"] else "without"
    text = f"{machine['cpu_model']}, {machine['cpus_usable']} usable cores, {bf16} native bf16 (AVX512-BF16/AMX)"
    if "cpu_vnni" in machine:  # int8 embeddings depend on it
        text += f", {'with' if machine['cpu_vnni'] else 'without'} VNNI"
    return text


def write_results(name: str, result: dict[str, Any], markdown: str, folder: Path = RESULTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (folder / f"{name}.md").write_text(markdown)
    print(f"wrote {folder / name}.json and .md")


def benchmark_machine(*packages: str) -> dict[str, Any]:
    """Where a result was measured: CPU, usable cores (shared machines limit them), versions, time."""
    from ptwiki_llm.models.runtime import cpu_has_native_bf16, cpu_has_vnni

    info = machine_info()
    return {
        "cpu_model": info["cpu"],
        "cpu_count": info["cores"],
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else info["cores"],
        "python": info["python"],
        "platform": info["platform"],
        "cpu_native_bf16": cpu_has_native_bf16(),  # decides bf16 autocast under 'auto' (train, embeddings)
        "cpu_vnni": cpu_has_vnni(),  # decides int8 ONNX embeddings under 'auto'
        "packages": package_versions(packages),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def add_workdir_arguments(parser: Any) -> None:
    """The arguments of the benchmarks that read a finished run's workdir (its index, registry, evaluation)."""
    parser.add_argument("--workdir", default=str(Path(__file__).resolve().parents[1] / ".ptwiki"))
    parser.add_argument("--arms", nargs="*", help="arms to run (default: evaluation.arms)")
    parser.add_argument("--note", default="", help="what the results file must say about this workdir")
