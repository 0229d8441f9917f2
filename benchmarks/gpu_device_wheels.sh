#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels the GPU device lacks, for benchmarks/gpu_device_run.sh.
# Run here, where PyPI is reachable, from the repository root: bash benchmarks/gpu_device_wheels.sh
#
# The device (nvidia-h200; /work/.library/device/KINDS.md) has Python 3.12, torch 2.11, transformers 5.17,
# accelerate 1.15, huggingface-hub 1.33, tokenizers, safetensors, pyarrow, pandas, xxhash, fsspec,
# sentence-transformers, triton, pytest; it lacks what is fetched here. Versions are this project's pins
# (requirements/constraints.txt, requirements/gpu.txt). About 50 MB in all, of the 64 MiB a device call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
pip=${PIP:-.venv/bin/python -m pip}
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
wheels=(
  trl==1.16.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19   # training (TRL + its data)
  bitsandbytes==0.50.2 liger-kernel==0.8.5                                     # QLoRA, Liger kernels
  pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.8.0 typing-inspection==0.4.5   # ptwiki_llm.config
)
rm -rf .whl
$pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl "${wheels[@]}"
ls -l .whl
du -sh .whl
