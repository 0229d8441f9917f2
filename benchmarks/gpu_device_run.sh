#!/usr/bin/env bash
# The GPU measurement in ONE call of the device tool (nvidia-h200), about 8 minutes:
#   1. installs the carried wheels (.whl/, filled here by benchmarks/gpu_device_wheels.sh) into /tmp/site;
#   2. records nvidia-smi and the package versions;
#   3. runs the `gpu` test (tests/training/test_gpu_qlora.py: QLoRA through run_training, stop, resume);
#   4. runs benchmarks/gpu_train_throughput.py at the Llama-2-7B shape with the time that is left.
# Everything lands in $OUT (at most 8 files come back): nvidia-smi.txt, versions.txt, gpu_test.log,
# gpu_test.xml, benchmark.log, gpu_train_throughput.json, gpu_train_throughput.md.
#
# Prepared here:  bash benchmarks/gpu_device_wheels.sh
# Device call:    run(command="bash benchmarks/gpu_device_run.sh", carry=[".whl"], timeout_s=480)
# Then copy gpu_train_throughput.{json,md} and gpu_test.log from the returned files into benchmarks/results/.
# BUDGET_S (default 420) is the seconds this script may take in all; keep it under the call's timeout_s, and
# leave device time (15 minutes a session, a machine's start included) for a second, shorter call at once
# while the machine is warm: arguments go to the benchmark, GPU_TEST=0 skips the test, e.g.
#   GPU_TEST=0 BUDGET_S=240 bash benchmarks/gpu_device_run.sh --variants lora-liger,lora-no-checkpointing
# (that call's result files hold only its own variants: keep both sets).
set -uo pipefail
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
cd "$(dirname "$0")/.." || exit 1
start=$SECONDS
budget=${BUDGET_S:-420}

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "installing the carried wheels failed (is .whl/ carried? run benchmarks/gpu_device_wheels.sh here)"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
echo "wheels installed after $((SECONDS - start)) s"

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 - > "$OUT/versions.txt" 2>&1 <<'PY'
import importlib.metadata as md, platform, sys
import torch
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "liger-kernel", "pydantic",
             "sentence-transformers", "huggingface-hub", "tokenizers", "safetensors", "pyarrow", "triton", "flash-attn"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
PY
cat "$OUT/versions.txt"

if [[ ${GPU_TEST:-1} != 0 ]]; then
  timeout 200 python3 -m pytest tests/training/test_gpu_qlora.py -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/gpu_test.xml" 2>&1 | tee "$OUT/gpu_test.log"
  echo "gpu test done after $((SECONDS - start)) s"
fi

left=$((budget - (SECONDS - start)))
if ((left < 120)); then echo "only $left s of BUDGET_S=$budget left: no time for the benchmark"; exit 1; fi
timeout $((left + 20)) python3 benchmarks/gpu_train_throughput.py --out "$OUT" --work /tmp/gpu_bench \
  --time-budget-s "$left" "$@" 2>&1 | tee "$OUT/benchmark.log"
echo "all done after $((SECONDS - start)) s"
