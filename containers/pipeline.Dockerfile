# The pipeline image (CPU steps; the SLURM jobs of hpc.container_runtime: podman run in it, and apptainer/pipeline.def
# turns it into the SIF): Python 3.11 with exactly requirements/constraints.txt and the torch of requirements/torch-cpu.txt.
# One recipe for every site; what differs is a build argument:
#   BASE_IMAGE   python:3.11-slim-bookworm, or a local Debian base where no registry is reachable (containers/build.sh
#                makes one with debootstrap)
#   TORCH_INDEX  where torch comes from: the PyTorch CPU index, or PyPI (its Linux wheel is the CUDA build)
#   LOCK_SHA256  sha256 of constraints.txt + torch-cpu.txt, checked here and recorded as a label
#   PIP_CONFIG_FILE  a pip.conf mounted for the build (a proxy's CA bundle); /dev/null = none
# containers/build.sh computes all of these, caches the result by content and runs the lock check. By hand:
#   docker build -f containers/pipeline.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     --build-arg LOCK_SHA256=$(cat requirements/constraints.txt requirements/torch-cpu.txt | sha256sum | cut -c1-64) .
# The code is not in the image: jobs mount the repository at /app.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG GIT_COMMIT=unknown
ARG LOCK_SHA256=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
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

COPY requirements/constraints.txt requirements/torch-cpu.txt apptainer/check_lock.py /opt/ptwiki/
# torch alone from TORCH_INDEX, then the lock from PyPI (torch's own dependencies at the versions its metadata
# pins), downloaded into a wheelhouse on a build cache mount (never a layer; one per torch index, so torch builds
# never mix; kept between builds, so a rebuild downloads nothing), then installed from it alone.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    lock=$(cat /opt/ptwiki/constraints.txt /opt/ptwiki/torch-cpu.txt | sha256sum | cut -c1-64) \
    && { [ "$lock" = "${LOCK_SHA256}" ] || { echo "LOCK_SHA256=${LOCK_SHA256} but the lock files hash to $lock" >&2; exit 1; }; } \
    && python3 -m venv /opt/venv \
    && wheels=/root/.cache/pip/wheels/$(echo "${TORCH_INDEX}" | sha256sum | cut -c1-12) \
    && pip download --no-deps --index-url "${TORCH_INDEX}" -d "$wheels" -r /opt/ptwiki/torch-cpu.txt \
    && pip download --find-links "$wheels" -d "$wheels" -r /opt/ptwiki/constraints.txt -r /opt/ptwiki/torch-cpu.txt \
    && pip install --no-index --find-links "$wheels" -r /opt/ptwiki/constraints.txt -r /opt/ptwiki/torch-cpu.txt \
    && python /opt/ptwiki/check_lock.py /opt/ptwiki/constraints.txt /opt/ptwiki/torch-cpu.txt \
    && pip freeze --all > /opt/ptwiki/pip-freeze.txt \
    && mkdir -p /app

LABEL org.opencontainers.image.title="ptwiki-pipeline" \
      org.opencontainers.image.description="ptwiki-llm CPU steps (ingest, validate, format, register)" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      ptwiki.lock.sha256="${LOCK_SHA256}" \
      ptwiki.torch.index="${TORCH_INDEX}" \
      ptwiki.base.image="${BASE_IMAGE}"

WORKDIR /app
ENTRYPOINT ["python"]
