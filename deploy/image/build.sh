#!/usr/bin/env bash
# Builds imgsweep's container image from the Dockerfile with podman (`make image`), and prints its reference.
#
#   1. the base: $PYTHON_IMAGE if set (e.g. python:3.11-slim-bookworm from a registry), otherwise Debian 12's
#      python3 made locally by deploy/image/build-base.sh (cached in podman's storage);
#   2. the wheelhouse, on the host: the dependencies pinned with hashes in requirements.lock, the pip of pip.lock
#      (hash-checked here by pip download --require-hashes), and imgsweep's own wheel, in .cache/image/wheelhouse/;
#   3. podman build --network host: the build reaches no network at all (pip runs with --no-index).
#
# Cached: the image is tagged with a hash of everything it is built from (Dockerfile, lock files, pyproject.toml,
# README.md, the service package, the base's id, the revision); when that tag exists nothing is rebuilt (well
# under a second). Otherwise podman's layer cache keeps the base and the dependency layer, so a change to the
# service's code rebuilds in seconds.
#
#   deploy/image/build.sh               build (or reuse) the image; prints its reference
#   deploy/image/build.sh --wheelhouse  only prepare the wheelhouse (no podman needed), e.g. before
#                                       `docker build .` or `docker compose -f deploy/compose.yaml up --build`
#
#   IMAGE            the name to tag (default localhost/imgsweep:<version>, <version>-otel with the extra)
#   IMGSWEEP_IMAGE_EXTRAS  otel: also install the otel extra (OpenTelemetry tracing), from
#                    deploy/image/requirements-otel.lock; empty (the default): the service alone
#   PYTHON_IMAGE     a base from a registry instead of the local Debian one
#   PYTHON           the Python whose pip downloads the wheels (default .venv/bin/python, else python3)
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "${repo}"
python="${PYTHON:-}"
if [[ -z "${python}" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
version="$("${python}" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
source=""
trap 'rm -rf "${source}"' EXIT
# One build at a time on this checkout: the wheelhouse is rewritten by each.
mkdir -p .cache/image
exec 9>.cache/image/build.lock
flock 9

extras="${IMGSWEEP_IMAGE_EXTRAS:-}"
case "${extras}" in
    "") lock=requirements.lock ;;
    otel) lock=requirements-otel.lock ;;
    *)
        echo "build.sh: IMGSWEEP_IMAGE_EXTRAS=${extras}: the image knows the extra otel only (or none)" >&2
        exit 2
        ;;
esac

make_wheelhouse() {
    # The wheels, for the image's platform (Debian 12: glibc 2.36, CPython 3.11), whatever Python runs this.
    wheelhouse=.cache/image/wheelhouse
    rm -rf "${wheelhouse}"
    mkdir -p "${wheelhouse}"/{pip,deps,app}
    # pip takes each --platform literally, so every manylinux tag glibc 2.36 can load is listed.
    arch="$(uname -m)"
    platforms=(--platform "manylinux2014_${arch}")
    for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_${arch}"); done
    download=("${python}" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps
        --only-binary=:all: "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311)
    "${download[@]}" --dest "${wheelhouse}/pip" -r deploy/image/pip.lock
    "${download[@]}" --dest "${wheelhouse}/deps" -r "deploy/image/${lock}"
    # imgsweep's wheel, built from a clean copy of its sources (a stale build/ in the tree cannot leak into it).
    # Fixed file dates make the wheel the same bytes for the same sources, so podman's layer cache can reuse it.
    source="$(mktemp -d "${TMPDIR:-/tmp}/imgsweep-wheel.XXXXXX")"
    cp -r pyproject.toml README.md service "${source}/"
    find "${source}/service" -name __pycache__ -prune -exec rm -rf {} +
    SOURCE_DATE_EPOCH=1735689600 "${python}" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --wheel-dir "${wheelhouse}/app" "${source}"
    rm -rf "${source}"
}

if [[ "${1:-}" == --wheelhouse ]]; then
    make_wheelhouse
    echo "${repo}/.cache/image/wheelhouse"
    exit 0
fi

tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${tools_dir}/podman/containers.conf}"
if [[ ! -f "${CONTAINERS_CONF}" ]] || ! command -v podman >/dev/null 2>&1; then
    echo "build.sh: podman or its configuration is missing: run deploy/tools/install-podman.sh (make tools does)" >&2
    exit 1
fi

image="${IMAGE:-localhost/imgsweep:${version}${extras:+-${extras}}}"

base="${PYTHON_IMAGE:-$(deploy/image/build-base.sh)}"
base_id="$(podman image inspect --format '{{.Id}}' "${base}" 2>/dev/null || echo "${base}")"

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "${revision}" != unknown && -n "$(git status --porcelain -- service pyproject.toml README.md Dockerfile deploy/image)" ]]; then
    revision="${revision}-dirty"
fi

# Everything the image is made of; the tag it gets says so.
inputs="$(
    {
        printf '%s\n' "${base_id}" "${revision}" "${version}" "${extras}"
        find service -type f -not -path '*/__pycache__/*' -not -name '*.py[co]' -print0 | sort -z \
            | xargs -0 sha256sum
        sha256sum Dockerfile .dockerignore pyproject.toml README.md "deploy/image/${lock}" deploy/image/pip.lock
    } | sha256sum | cut -c1-16
)"
# One series of tags per variant (inputs-<hash>, inputs-otel-<hash>), so building one keeps the other's.
inputs_prefix="localhost/imgsweep:inputs-${extras:+${extras}-}"
inputs_tag="${inputs_prefix}${inputs}"
if podman image exists "${inputs_tag}"; then
    podman tag "${inputs_tag}" "${image}"
    echo "${inputs_tag}"
    exit 0
fi

make_wheelhouse
echo "build.sh: building ${image} on ${base}" >&2
podman build --network host --pull=missing --layers \
    --file Dockerfile \
    --build-arg "PYTHON_IMAGE=${base}" \
    --build-arg "VERSION=${version}" \
    --build-arg "REVISION=${revision}" \
    --build-arg "REQUIREMENTS=${lock}" \
    --build-arg "EXTRAS=${extras}" \
    --build-arg "SOURCE=$(git remote get-url origin 2>/dev/null || true)" \
    --tag "${image}" --tag "${inputs_tag}" \
    . >&2

# Earlier builds of changed sources are dropped (an image a running container uses stays until it stops).
for old in $(podman images --noheading --format '{{.Repository}}:{{.Tag}}' localhost/imgsweep); do
    if [[ "${old}" == "${inputs_prefix}"* && "${old}" != "${inputs_tag}" ]] \
        && [[ -n "${extras}" || "${old}" != localhost/imgsweep:inputs-otel-* ]]; then
        podman rmi "${old}" >/dev/null 2>&1 || true
    fi
done
echo "${inputs_tag}"
