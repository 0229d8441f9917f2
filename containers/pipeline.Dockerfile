# OCI equivalent of apptainer/pipeline.def (CPU steps), for machines with Docker/Podman.
#   docker build -f containers/pipeline.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t ptwiki-pipeline .
#   apptainer build ptwiki-pipeline.sif docker-daemon://ptwiki-pipeline:latest      # -> the same SIF
# The code is not in the image: bind or mount the repository at /app.
FROM python:3.11-slim-bookworm

ARG GIT_COMMIT=unknown
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
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

COPY requirements/constraints.txt requirements/torch-cpu.txt apptainer/check_lock.py /opt/ptwiki/
RUN pip install --index-url "${TORCH_CPU_INDEX}" -r /opt/ptwiki/torch-cpu.txt \
    && pip install -r /opt/ptwiki/constraints.txt \
    && python /opt/ptwiki/check_lock.py /opt/ptwiki/constraints.txt /opt/ptwiki/torch-cpu.txt \
    && sha256sum /opt/ptwiki/constraints.txt /opt/ptwiki/torch-cpu.txt > /opt/ptwiki/lock.sha256

LABEL org.opencontainers.image.title="ptwiki-pipeline" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /app
ENTRYPOINT ["python"]
