"""How big the checkpoint a SIGUSR1/SIGTERM asks for is, for the Atena presets (7B, 13B, 70B).

The time the trainer needs after SLURM's time-limit warning (or after a cancel, before ``KillWait`` ends in
SIGKILL) is the rest of the current optimizer step plus writing this checkpoint. Its size follows from the
preset: the trainable LoRA parameters (counted here on the meta device from Llama 2's published
architectures and the preset's ``train.lora``; no weights are loaded) times the bytes per trainable
parameter of a real save (measured here: ``save_pretrained`` of a small LoRA model plus
``torch.save`` of its AdamW state after one step). The write speed measured here is this (shared) machine's
local disk, an example only: measure your scratch filesystem with the ``dd`` line in docs/training.md.
Results: benchmarks/results/checkpoint_sizes.{json,md}.

Usage: .venv/bin/python benchmarks/checkpoint_sizes.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import benchmark_machine, write_results  # noqa: E402
from ptwiki_llm.config import load_config  # noqa: E402
from ptwiki_llm.training.settings import lora_config  # noqa: E402

# config.json of meta-llama/Llama-2-{7b,13b,70b}-hf (vocab 32000, 4096 positions)
ARCHITECTURES = {
    "atena": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32),
    "atena-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                      num_key_value_heads=40),
    "atena-70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                      num_key_value_heads=8),
}


def lora_parameters(preset: str) -> tuple[str, int]:
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = load_config(REPO / "configs" / f"{preset}.yaml", environ={})
    arch = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, **ARCHITECTURES[preset])
    with torch.device("meta"):
        model = get_peft_model(LlamaForCausalLM(arch), lora_config(config.train))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return config.models.base.name, trainable


def bytes_per_trainable_parameter(tmp: Path) -> tuple[float, int]:
    """Adapter + AdamW state on disk per trainable parameter, from a real save of a small LoRA model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    arch = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4)
    model = get_peft_model(LlamaForCausalLM(arch), LoraConfig(r=16, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    model(input_ids=torch.randint(0, 256, (2, 16)), labels=torch.randint(0, 256, (2, 16))).loss.backward()
    optimizer.step()
    model.save_pretrained(tmp / "adapter")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".pt"))
    count = sum(p.numel() for p in trainable)
    return size / count, count


def write_speed(tmp: Path, megabytes: int = 512) -> float:
    """MB/s of a sequential write + fsync on this machine's disk."""
    block = os.urandom(1 << 20)
    start = time.perf_counter()
    with (tmp / "probe.bin").open("wb") as handle:
        for _ in range(megabytes):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    return megabytes / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ckpt-sizes-", dir=REPO / ".ptwiki" if (REPO / ".ptwiki").is_dir()
                                     else None) as folder:
        tmp = Path(folder)
        per_param, probe_params = bytes_per_trainable_parameter(tmp)
        speed = write_speed(tmp)
    rows = []
    for preset in ARCHITECTURES:
        base, trainable = lora_parameters(preset)
        size = trainable * per_param
        rows.append({"preset": preset, "base": base, "lora_trainable_parameters": trainable,
                     "checkpoint_bytes": round(size), "write_seconds_at_measured_speed": round(size / 1e6 / speed, 2)})
    result = {"machine": benchmark_machine("torch", "transformers", "peft"), "bytes_per_trainable_parameter":
              round(per_param, 3), "probe_trainable_parameters": probe_params,
              "local_disk_write_mb_per_s": round(speed, 1), "presets": rows,
              "note": "machine shared with other engineers' jobs while measured; write speed is this machine's disk"}
    lines = ["# Checkpoint size of a preemption/cancel save (LoRA adapter + AdamW state)", "",
             f"Machine: {result['machine']['cpu_model']}, {result['machine']['cpus_usable']} usable cores "
             f"(shared), {result['machine']['date_utc']}.",
             f"Bytes per trainable parameter of a real save: {per_param:.3f} "
             f"(adapter safetensors + optimizer.pt, {probe_params} parameters).",
             f"Sequential write + fsync on this machine's disk: {speed:.0f} MB/s (an example, not Atena's scratch).",
             "",
             "| preset | base | LoRA parameters | checkpoint | write time here |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['base']} | {r['lora_trainable_parameters']:,} | "
              f"{r['checkpoint_bytes'] / 1e9:.2f} GB | {r['write_seconds_at_measured_speed']:.1f} s |" for r in rows]
    write_results("checkpoint_sizes", result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
