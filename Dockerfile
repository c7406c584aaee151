# syntax=docker/dockerfile:1
#
# imgsweep's container image: wheels are built in one stage, and the runtime stage installs only those
# wheels into a virtual environment. The runtime has no compiler, no build backend, no pip cache and no
# source tree; it runs as the numeric non-root user 10001 and writes nothing outside /tmp, so it works
# with a read-only root filesystem (the Helm chart mounts an emptyDir at /tmp).
#
#   docker build -t imgsweep:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm --read-only --tmpfs /tmp imgsweep:0.1.0 check-config
#
# Every dependency has a binary wheel for this platform (`--only-binary=:all:`), so neither stage needs
# apt packages. Pin the base by digest in CI (--build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the tree out of the context).
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip wheel --only-binary=:all: --wheel-dir /wheels .


FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG PYTHON_IMAGE

LABEL org.opencontainers.image.title="imgsweep" \
      org.opencontainers.image.description="Deletes delisted products' images from JD product image search collections, driven by Kafka events." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/imgsweep/imgsweep" \
      org.opencontainers.image.documentation="https://github.com/imgsweep/imgsweep#readme" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/imgsweep/bin:${PATH}

# The wheels are bind-mounted from the builder for this one step, so they are not a layer of the image.
# Bytecode is compiled here, at build time, because nothing can write it at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/imgsweep \
    && /opt/imgsweep/bin/pip install --no-index --find-links=/wheels imgsweep \
    && /opt/imgsweep/bin/pip uninstall --yes pip \
    && groupadd --system --gid 10001 imgsweep \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin imgsweep

USER 10001:10001
# Read-only for that user: nothing is written relative to the working directory.
WORKDIR /opt/imgsweep

# /metrics, /livez and /readyz (IMGSWEEP_HTTP__PORT).
EXPOSE 8080

ENTRYPOINT ["imgsweep"]
CMD ["run"]
