# The multispot server and controller image (deploy/compose.yaml, deploy/k8s/).
# Cloud adapters are extras: build with --build-arg EXTRAS=server,sagemaker (or vertex, azureml, all).
FROM python:3.11-slim

ARG EXTRAS=server
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MULTISPOT_HOME=/var/lib/multispot

WORKDIR /src
COPY pyproject.toml README.md ./
COPY multispot ./multispot
COPY adapters ./adapters
RUN pip install ".[${EXTRAS}]" && rm -rf /src

# A fixed non-root user: the Kubernetes manifests run as 10001 with runAsNonRoot.
RUN groupadd --gid 10001 multispot \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/multispot --create-home multispot \
    && chmod 0700 /var/lib/multispot
USER 10001:10001
WORKDIR /var/lib/multispot

EXPOSE 8400
ENTRYPOINT ["multispot"]
CMD ["server", "--host", "0.0.0.0", "--port", "8400"]
