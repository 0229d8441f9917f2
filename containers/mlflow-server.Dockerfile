# OCI equivalent of apptainer/mlflow-server.def: MLflow with basic auth, shared packages at locked versions.
#   docker build -f containers/mlflow-server.Dockerfile -t ptwiki-mlflow-server .
# The ZenML server and Weaviate use their official images (zenmldocker/zenml-server:0.98.0,
# cr.weaviate.io/semitechnologies/weaviate:1.40.2): apptainer/zenml-server.def and weaviate.def.
FROM python:3.11-slim-bookworm

ARG GIT_COMMIT=unknown
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

COPY requirements/constraints.txt requirements/mlflow-server.txt apptainer/check_lock.py /opt/ptwiki/
RUN pip install -c /opt/ptwiki/constraints.txt -r /opt/ptwiki/mlflow-server.txt \
    && python /opt/ptwiki/check_lock.py /opt/ptwiki/mlflow-server.txt

LABEL org.opencontainers.image.title="ptwiki-mlflow-server" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"

EXPOSE 5000
ENTRYPOINT ["mlflow"]
