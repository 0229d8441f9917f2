"""Peak memory of the register step for a Llama-2-70b adapter, which reads no base weights.

The base folder holds what a staged Llama-2-70b-hf has except its weights: config.json (the published
architecture), a tokenizer (word-level, 32000 words) and the stage manifest. The adapter has atena-70b's
``train.lora`` (r=16 on all seven projections of 80 layers: 207M parameters, 0.83 GB in float32) with random
values. ``registry.register_adapter`` runs for real in a fresh process (MLflow with a SQLite store in a temp
folder) and its peak resident memory is read from the kernel (``ru_maxrss`` of the child). That the step
never opens the base's weights is what lets this folder have none; a load of them would fail here.

Usage: .venv/bin/python benchmarks/register_memory.py       (about 1 minute, 2 GB of temp files)
Results: benchmarks/results/register_memory.{json,md}.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, write_results  # noqa: E402
from benchmarks.checkpoint_sizes import ARCHITECTURES  # noqa: E402
from benchmarks.random_models import _word_tokenizer, _write_manifest  # noqa: E402
from ptwiki_llm.config import Config, load_config  # noqa: E402

PRESET = "atena-70b"


def preset(root: Path) -> Config:
    return load_config(REPO / "configs" / f"{PRESET}.yaml", {
        "workdir": str(root / "workdir"), "models": {"store": str(root / "store")},
        "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_location": str(root / "artifacts")},
    }, environ={})


def write_inputs(root: Path) -> dict[str, int]:
    """The weightless base folder and a random adapter of the preset's LoRA settings."""
    import torch
    from peft import get_peft_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from ptwiki_llm.models.staging import stored_model_dir
    from ptwiki_llm.training.settings import lora_config

    config = preset(root)
    base = stored_model_dir(config.models.base, config)
    base.mkdir(parents=True)
    arch = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1,
                       eos_token_id=2, tie_word_embeddings=False, **ARCHITECTURES[PRESET])
    arch.save_pretrained(str(base))
    _word_tokenizer(32000, ["<unk>", "<s>", "</s>"], "<s> $A", unk_token="<unk>", bos_token="<s>",
                    eos_token="</s>").save_pretrained(str(base))
    _write_manifest(base, base.name, "config-only-llama-2-70b", 0)
    with torch.device("meta"):
        model = get_peft_model(LlamaForCausalLM(arch), lora_config(config.train))
    generator = torch.Generator().manual_seed(0)
    shapes = {name: tensor.shape for name, tensor in get_peft_model_state_dict(model).items()}
    adapter = root / "adapter"
    model.peft_config["default"].save_pretrained(str(adapter))
    save_file({name: torch.randn(shape, generator=generator) * 0.01 for name, shape in shapes.items()},
              str(adapter / "adapter_model.safetensors"))
    return {"tensors": len(shapes), "parameters": sum(s.numel() for s in shapes.values()),
            "adapter_bytes": (adapter / "adapter_model.safetensors").stat().st_size}


def register(root: Path) -> None:
    """The child: register the adapter as the pipeline's register step would."""
    from ptwiki_llm.registry import register_adapter
    from ptwiki_llm.training.result import HeldoutComparison, TrainMetrics, TrainResult
    from ptwiki_llm.training.trainer import base_pointer

    config = preset(root)
    metrics = TrainMetrics(global_step=0, resumed_from_step=0, train_runtime_s=None, train_loss_mean=None,
                           tokens_this_session=0, tokens_per_s=None, step_time_s=None, tokens_per_s_wall=None,
                           peak_memory_mb=0.0, model_load_s=0.0, last_eval_loss=None)
    trained = TrainResult(
        status="completed", run_dir=str(root), adapter_dir=str(root / "adapter"), base=base_pointer(config),
        train="", eval=None, dataset_sha256=None, train_sha256=None, eval_sha256=None, config_sha256=config.digest(),
        train_config={}, device="cuda", dtype="bfloat16", mixed_precision="bf16", world_size=8, examples={},
        metrics=metrics, heldout=HeldoutComparison(), mlflow_run_id=None)
    registered = register_adapter(config, trained)
    print(json.dumps({"version": registered.version, "artifacts": registered.artifacts}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        register(Path(sys.argv[2]))
        return
    with tempfile.TemporaryDirectory(prefix="register-memory-") as tmp:
        root = Path(tmp)
        inputs = write_inputs(root)
        started = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--child", str(root)], capture_output=True, text=True,
                               check=False)
        seconds = time.perf_counter() - started
        if child.returncode:
            raise SystemExit(child.stdout + child.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
        logged = json.loads(child.stdout.strip().splitlines()[-1])
    base_bf16 = 68976648192 * 2
    result = {
        "machine": benchmark_machine("torch", "transformers", "peft", "mlflow"),
        "preset": PRESET, "adapter": inputs, "register_wall_s": round(seconds, 1), "register_peak_rss_bytes": peak,
        "logged_files": logged["artifacts"],
        "base_bf16_bytes_not_loaded": base_bf16,
    }
    gib = 1 << 30
    markdown = (
        "# Register step memory for a Llama-2-70b adapter (no base weights read)\n\n"
        f"Machine: {result['machine']['cpu_model']}, {result['machine']['cpus_usable']} usable cores (shared), "
        f"{result['machine']['date_utc']}.\n\n"
        f"Adapter: {PRESET}'s train.lora, {inputs['parameters']:,} parameters in {inputs['tensors']} tensors, "
        f"{inputs['adapter_bytes'] / gib:.2f} GiB (float32, random values). Base folder: config.json, tokenizer "
        "and stage manifest of Llama-2-70b-hf, no weights.\n\n"
        "| measured | value |\n|---|---:|\n"
        f"| register_adapter peak resident memory (child process) | {peak / gib:.2f} GiB |\n"
        f"| register_adapter wall time, including imports and MLflow (shared machine) | {seconds:.1f} s |\n\n"
        f"Before, the step loaded the bf16 base on the CPU: {base_bf16 / gib:.1f} GiB of weights alone (the "
        "parameter count times 2 bytes, computed, not measured), hence the 192G job it asked for.\n\n"
        "Logged files: " + ", ".join(f"`{f}`" for f in logged["artifacts"]) + "\n"
    )
    write_results("register_memory", result, markdown)


if __name__ == "__main__":
    main()
