# The MLflow tracking server with basic auth (infra/mlflow/server.sbatch; apptainer/mlflow-server.def turns it into the
# SIF): mlflow[auth] of requirements/mlflow-server.txt, every shared dependency at the pipeline's locked version.
# The same BASE_IMAGE / LOCK_SHA256 / PIP_CONFIG_FILE build arguments as containers/pipeline.Dockerfile; here the
# lock is constraints.txt + mlflow-server.txt. Build: containers/build.sh mlflow-server
# The ZenML server and Weaviate use their official images (apptainer/zenml-server.def and weaviate.def).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG GIT_COMMIT=unknown
ARG LOCK_SHA256=
ARG PIP_CONFIG_FILE=/dev/null
ARG PIP_DEFAULT_TIMEOUT=180
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true PTWIKI_IMAGE_LOCK_SHA256=${LOCK_SHA256}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements/constraints.txt requirements/mlflow-server.txt apptainer/check_lock.py /opt/ptwiki/
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    lock=$(cat /opt/ptwiki/constraints.txt /opt/ptwiki/mlflow-server.txt | sha256sum | cut -c1-64) \
    && { [ "$lock" = "${LOCK_SHA256}" ] || { echo "LOCK_SHA256=${LOCK_SHA256} but the lock files hash to $lock" >&2; exit 1; }; } \
    && python3 -m venv /opt/venv \
    && wheels=/root/.cache/pip/wheels/pypi \
    && pip download -d "$wheels" -c /opt/ptwiki/constraints.txt -r /opt/ptwiki/mlflow-server.txt \
    && pip install --no-index --find-links "$wheels" -c /opt/ptwiki/constraints.txt -r /opt/ptwiki/mlflow-server.txt \
    && python /opt/ptwiki/check_lock.py /opt/ptwiki/mlflow-server.txt \
    && python -c "import mlflow.server.auth, flask_wtf" \
    && pip freeze --all > /opt/ptwiki/pip-freeze.txt

LABEL org.opencontainers.image.title="ptwiki-mlflow-server" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      ptwiki.lock.sha256="${LOCK_SHA256}" \
      ptwiki.base.image="${BASE_IMAGE}"

EXPOSE 5000
ENTRYPOINT ["mlflow"]
