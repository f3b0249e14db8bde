# The multispot server and controller image (deploy/compose.yaml, deploy/k8s/).
# Cloud adapters are extras: build with --build-arg EXTRAS=server,sagemaker (or vertex, azureml, all).
FROM python:3.11-slim

ARG EXTRAS=server
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MULTISPOT_HOME=/data/home \
    MULTISPOT_SERVER_CODE=/data/code

WORKDIR /src
COPY pyproject.toml README.md ./
COPY multispot ./multispot
COPY adapters ./adapters
RUN pip install ".[${EXTRAS}]" && rm -rf /src

# A fixed non-root user: the Kubernetes manifests run as 10001 with runAsNonRoot.
# /data is where the deployments mount the volume the server and the controllers share.
RUN groupadd --gid 10001 multispot \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data/home multispot \
    && install -d -o 10001 -g 10001 -m 0700 /data /data/home /data/code
USER 10001:10001
WORKDIR /data

EXPOSE 8400
ENTRYPOINT ["multispot"]
CMD ["server", "--host", "0.0.0.0", "--port", "8400"]
