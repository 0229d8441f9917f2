# OCI equivalent of apptainer/train.def (GPU steps: CUDA torch, bitsandbytes, peft, trl).
#   docker build -f containers/train.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t ptwiki-train .
#   docker run --gpus all -v "$PWD":/app ptwiki-train -m ...      # or convert to a SIF (see pipeline.Dockerfile)
FROM python:3.11-slim-bookworm

ARG GIT_COMMIT=unknown
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    ZENML_ANALYTICS_OPT_IN=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true \
    PTWIKI_IMAGE_GIT_COMMIT=${GIT_COMMIT}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian packages are not version-pinned: they follow the base image's point release
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bzip2 ca-certificates git libgomp1 \
    && rm -rf /var/lib/apt/lists/*

COPY requirements/constraints.txt requirements/gpu.txt apptainer/check_lock.py /opt/ptwiki/
COPY requirements/torch-cpu.txt /opt/ptwiki/torch.txt
RUN pip install --index-url "${TORCH_INDEX}" -r /opt/ptwiki/torch.txt \
    && pip install -r /opt/ptwiki/constraints.txt -r /opt/ptwiki/gpu.txt \
    && python /opt/ptwiki/check_lock.py /opt/ptwiki/constraints.txt /opt/ptwiki/torch.txt /opt/ptwiki/gpu.txt \
    && sha256sum /opt/ptwiki/constraints.txt /opt/ptwiki/torch.txt /opt/ptwiki/gpu.txt > /opt/ptwiki/lock.sha256

LABEL org.opencontainers.image.title="ptwiki-train" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /app
ENTRYPOINT ["python"]
