#!/usr/bin/env bash
# Installs the pinned helm into ${IMGSWEEP_TOOLS_DIR:-$HOME/.cache/imgsweep/tools}/bin, built from source
# with `go install` through the Go module proxy (no release tarball is downloaded).
#
# Idempotent: when the pinned version is already there it only prints its path (well under a second).
# Needs Go >= 1.26 (on PATH, $GO, or /usr/local/go/bin/go) only when it has to build; the build takes a few
# minutes on two cores and its module downloads are cached in Go's module cache.
#
# The version stamps are the ones helm's own Makefile sets, so `helm version` tells the truth and
# `.Capabilities.KubeVersion` (and lint's deprecation checks) default to the Kubernetes release helm was
# built against, not helm's fallback of 1.20.
set -euo pipefail

HELM_VERSION="v3.22.0"
# helm v3.22.0 builds against k8s.io/client-go v0.37.0, i.e. Kubernetes 1.37 (its Makefile derives the same).
HELM_KUBE_MAJOR="1"
HELM_KUBE_MINOR="37"

tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
bin_dir="${tools_dir}/bin"
helm_bin="${bin_dir}/helm"

installed_version() {
    "${helm_bin}" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "${helm_bin}" && "$(installed_version)" == "${HELM_VERSION}" ]]; then
    echo "${helm_bin}"
    exit 0
fi

go_bin="${GO:-}"
if [[ -z "${go_bin}" ]]; then
    if command -v go >/dev/null 2>&1; then
        go_bin="$(command -v go)"
    elif [[ -x /usr/local/go/bin/go ]]; then
        go_bin=/usr/local/go/bin/go
    else
        echo "install-helm.sh: Go is needed to build helm ${HELM_VERSION}: install Go >= 1.26 (https://go.dev/doc/install)" \
            "or put a helm ${HELM_VERSION} binary at ${helm_bin}" >&2
        exit 1
    fi
fi

mkdir -p "${bin_dir}"
echo "install-helm.sh: building helm ${HELM_VERSION} into ${bin_dir} (a few minutes, once)" >&2
ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X ${package}.k8sVersionMajor=${HELM_KUBE_MAJOR} -X ${package}.k8sVersionMinor=${HELM_KUBE_MINOR}"
done
# GOFLAGS is replaced, not extended: a caller's flags (-mod=vendor, -tags...) must not change what is built.
GOFLAGS=-trimpath CGO_ENABLED=0 GOBIN="${bin_dir}" \
    "${go_bin}" install -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"

if [[ "$(installed_version)" != "${HELM_VERSION}" ]]; then
    echo "install-helm.sh: ${helm_bin} reports '$(installed_version)', expected ${HELM_VERSION}" >&2
    exit 1
fi
echo "${helm_bin}"
