# syntax=docker/dockerfile:1
#
# imgsweep's container image. `make image` builds it (deploy/image/build.sh, with podman): the wheels are
# prepared on the host first, in .cache/image/wheelhouse/ (the dependencies pinned with hashes in
# deploy/image/requirements.lock, the pip of deploy/image/pip.lock, imgsweep's own wheel), so the build reaches
# no network. The builder stage installs them into a virtual environment with pip run from its wheel; the
# runtime stage gets only that environment: no pip, no setuptools, no wheel, no compiler, no source tree. It runs
# as the numeric non-root user 10001 and writes nothing outside /tmp, so it works with a read-only root
# filesystem (the Helm chart mounts an emptyDir at /tmp).
#
#   make image                                                  # base: Debian 12's python3, made locally
#   make image PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:…  # or a base from a registry
#   make image IMGSWEEP_IMAGE_EXTRAS=otel                       # with tracing (localhost/imgsweep:0.1.0-otel)
#   podman run --rm --network host --read-only --user 10001 localhost/imgsweep:0.1.0 check-config
#
# The base must be Debian 12 (bookworm) with CPython 3.11 as python3: the wheels are for that platform
# (docs/decisions/0004-container-image-base.md). Regenerate the lock files with deploy/image/lock.sh.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# The lock the dependencies come from: requirements.lock, or requirements-otel.lock for the image with the otel
# extra (OpenTelemetry tracing, IMGSWEEP_TRACING__ENABLED); build.sh downloads the same lock's wheels.
ARG REQUIREMENTS=requirements.lock

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY deploy/image/${REQUIREMENTS} /install/requirements.lock
COPY .cache/image/wheelhouse/pip/ /install/pip/
COPY .cache/image/wheelhouse/deps/ /install/deps/
# The dependencies first, in their own layer: a change to imgsweep's code does not reinstall them. pip runs from
# its wheel (`python pip.whl/pip`), so it is never installed; every file must match a hash of the lock.
RUN python3 -m venv --without-pip /opt/imgsweep \
    && set -- /install/pip/pip-*.whl \
    && /opt/imgsweep/bin/python "$1/pip" install --no-index --find-links=/install/deps --only-binary=:all: \
        --require-hashes --no-deps --requirement /install/requirements.lock

COPY .cache/image/wheelhouse/app/ /install/app/
# Bytecode is compiled here (pip does by default), because nothing can write it at run time.
RUN set -- /install/pip/pip-*.whl \
    && /opt/imgsweep/bin/python "$1/pip" install --no-index --no-deps /install/app/imgsweep-*.whl \
    && /opt/imgsweep/bin/python "$1/pip" check


FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    PATH=/opt/imgsweep/bin:${PATH}

# A registry's python image brings pip, setuptools and wheel into the system Python; Debian's python3 has none.
# (PIP_BREAK_SYSTEM_PACKAGES: a base whose Python is marked externally managed may still lose its pip.)
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip uninstall --yes --quiet --disable-pip-version-check \
            pip setuptools wheel; \
    fi \
    && groupadd --system --gid 10001 imgsweep \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin imgsweep

COPY --from=builder /opt/imgsweep /opt/imgsweep

USER 10001:10001
# Read-only for that user: nothing is written relative to the working directory.
WORKDIR /opt/imgsweep

# /metrics, /livez and /readyz (IMGSWEEP_HTTP__PORT).
EXPOSE 8080

# Last, so a new revision only changes the image's metadata.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG PYTHON_IMAGE
# The repository the image was built from (build.sh passes git's origin, if any); the extras it includes.
ARG SOURCE=""
ARG EXTRAS=""

LABEL org.opencontainers.image.title="imgsweep" \
      org.opencontainers.image.description="Deletes delisted products' images from JD product image search collections, driven by Kafka events." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      io.imgsweep.extras="${EXTRAS}"

ENTRYPOINT ["imgsweep"]
CMD ["run"]
