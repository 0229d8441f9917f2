# The training image (GPU steps: train, index, evaluate; apptainer/train.def turns it into the SIF): the CUDA build of
# torch at the version requirements/torch-cpu.txt pins (its CUDA runtime comes as nvidia-* wheels pinned by torch
# itself; the driver comes from the host), bitsandbytes for QLoRA (requirements/gpu.txt), everything else exactly
# as in requirements/constraints.txt. The same build arguments as containers/pipeline.Dockerfile; TORCH_INDEX picks the
# CUDA variant (PyPI's Linux torch is a CUDA build too). Build: containers/build.sh train
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG GIT_COMMIT=unknown
ARG LOCK_SHA256=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG PIP_CONFIG_FILE=/dev/null
ARG PIP_DEFAULT_TIMEOUT=180
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    ZENML_ANALYTICS_OPT_IN=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true \
    PTWIKI_IMAGE_GIT_COMMIT=${GIT_COMMIT} PTWIKI_IMAGE_LOCK_SHA256=${LOCK_SHA256}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian packages are not version-pinned: they follow the base image's point release
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bzip2 ca-certificates git libgomp1 \
    && rm -rf /var/lib/apt/lists/*

COPY requirements/constraints.txt requirements/gpu.txt apptainer/check_lock.py /opt/ptwiki/
COPY requirements/torch-cpu.txt /opt/ptwiki/torch.txt
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    lock=$(cat /opt/ptwiki/constraints.txt /opt/ptwiki/torch.txt /opt/ptwiki/gpu.txt | sha256sum | cut -c1-64) \
    && { [ "$lock" = "${LOCK_SHA256}" ] || { echo "LOCK_SHA256=${LOCK_SHA256} but the lock files hash to $lock" >&2; exit 1; }; } \
    && python3 -m venv /opt/venv \
    && wheels=/root/.cache/pip/wheels/$(echo "${TORCH_INDEX}" | sha256sum | cut -c1-12) \
    && pip download --no-deps --index-url "${TORCH_INDEX}" -d "$wheels" -r /opt/ptwiki/torch.txt \
    && pip download --find-links "$wheels" -d "$wheels" -r /opt/ptwiki/constraints.txt -r /opt/ptwiki/torch.txt -r /opt/ptwiki/gpu.txt \
    && pip install --no-index --find-links "$wheels" -r /opt/ptwiki/constraints.txt -r /opt/ptwiki/torch.txt -r /opt/ptwiki/gpu.txt \
    && python /opt/ptwiki/check_lock.py /opt/ptwiki/constraints.txt /opt/ptwiki/torch.txt /opt/ptwiki/gpu.txt \
    && python -c "import torch; assert torch.version.cuda, 'torch is not a CUDA build'" \
    && pip freeze --all > /opt/ptwiki/pip-freeze.txt \
    && mkdir -p /app

LABEL org.opencontainers.image.title="ptwiki-train" \
      org.opencontainers.image.description="ptwiki-llm GPU steps (train, index, evaluate): CUDA torch, bitsandbytes" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      ptwiki.lock.sha256="${LOCK_SHA256}" \
      ptwiki.torch.index="${TORCH_INDEX}" \
      ptwiki.base.image="${BASE_IMAGE}"

WORKDIR /app
ENTRYPOINT ["python"]
