#!/usr/bin/env bash
# Regenerates imgsweep's lock files from pyproject.toml (`make lock`), with the sha256 of every file PyPI has for
# each pinned version (any platform), so pip installs exactly these and nothing else, in the image and in .venv:
#
#   deploy/image/dev.lock            the runtime dependencies plus the dev and bench extras: what `make setup`
#                                    installs into .venv (pip install --require-hashes), so the tests run with the
#                                    image's versions
#   deploy/image/requirements.lock   imgsweep's runtime dependencies, the image's: the same versions as dev.lock
#                                    (resolved with dev.lock's pins preferred; tests/unit/test_locks.py checks it)
#   deploy/image/requirements-otel.lock  the same plus the `otel` extra (tracing), for the image built with
#                                    IMGSWEEP_IMAGE_EXTRAS=otel; constrained by requirements.lock's versions
#   deploy/image/pip.lock            the pip that installs them during the build (run from its wheel, never
#                                    installed into the image) and into .venv
#
#   make lock                        after changing dependencies in pyproject.toml: keeps every pin it can
#   make lock LOCK_ARGS=--upgrade    takes every update (--upgrade-package NAME: one package's)
#   deploy/image/lock.sh --otel      only requirements-otel.lock (after changing the otel extra)
#
# Needs network to PyPI and a Python 3.11 (the image's Python: Debian 12's python3) as $PYTHON, python3.11 or
# python3. pip-tools runs from a throwaway virtual environment under ${IMGSWEEP_TOOLS_DIR:-~/.cache/imgsweep/tools}.
set -euo pipefail

PIP_TOOLS_VERSION="7.6.2"
PIP_VERSION="26.3"

repo="$(cd "$(dirname "$0")/../.." && pwd)"
tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
venv="${tools_dir}/pip-tools-${PIP_TOOLS_VERSION}"

python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [[ "$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "3.11" ]]; then
    echo "lock.sh: ${python} is not Python 3.11, the image's Python; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [[ ! -x "${venv}/bin/pip-compile" ]]; then
    "${python}" -m venv "${venv}"
    "${venv}/bin/pip" install --quiet "pip-tools==${PIP_TOOLS_VERSION}"
fi

cd "${repo}"
compile=("${venv}/bin/pip-compile" --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
    --resolver=backtracking)
export CUSTOM_COMPILE_COMMAND="make lock"

lock_otel() {
    # requirements.lock without its hashes is the constraint: the otel image differs by the extra's packages only.
    local constraints header="# The image's pinned dependencies with hashes. Regenerate with make lock; do not edit by hand."
    constraints="$(mktemp)"
    sed -e 's/ *\\$//' -e '/^ *--hash/d' -e '/^ *#/d' -e 's/ *#.*//' -e '/^$/d' deploy/image/requirements.lock \
        >"${constraints}"
    "${compile[@]}" --extra otel --constraint "${constraints}" --output-file deploy/image/requirements-otel.lock \
        pyproject.toml
    sed -i -e "1i ${header}" -e "s|-c ${constraints}|-c deploy/image/requirements.lock|" \
        deploy/image/requirements-otel.lock
    rm -f "${constraints}"
    echo "wrote deploy/image/requirements-otel.lock"
}
if [[ "${1:-}" == --otel ]]; then
    lock_otel
    exit 0
fi

# The whole set first (its first lock starts from the image's pins), then the runtime set with the whole set's
# pins as the existing output, which pip-compile keeps: one resolution, so the tests run what the image runs.
header="# The test environment's pinned dependencies (runtime, dev, bench) with hashes. Regenerate with make lock."
[[ -f deploy/image/dev.lock ]] || cp deploy/image/requirements.lock deploy/image/dev.lock
"${compile[@]}" "$@" --extra dev --extra bench --output-file deploy/image/dev.lock pyproject.toml
# The dev extra's own imgsweep[otel] pins imgsweep itself as this directory: make setup installs it editable.
sed -i -e '/^# WARNING: pip install will require/,/^    # via imgsweep (pyproject.toml)$/d' -e "1i ${header}" \
    deploy/image/dev.lock

header="# The image's pinned dependencies with hashes. Regenerate with make lock; do not edit by hand."
cp deploy/image/dev.lock deploy/image/requirements.lock
"${compile[@]}" --output-file deploy/image/requirements.lock pyproject.toml
sed -i "1i ${header}" deploy/image/requirements.lock

tmp="$(mktemp)"
trap 'rm -f "${tmp}" "${tmp}.in"' EXIT
echo "pip==${PIP_VERSION}" >"${tmp}.in"
"${compile[@]}" --allow-unsafe --output-file "${tmp}" "${tmp}.in"
{
    echo "${header}"
    echo "# The pip that installs requirements.lock during the build; it runs from its wheel and stays out of the image."
    grep -v '^#' "${tmp}" | grep -v '^$' | sed 's/ *# via.*//'
} >deploy/image/pip.lock
echo "wrote deploy/image/dev.lock, deploy/image/requirements.lock and deploy/image/pip.lock"
lock_otel
