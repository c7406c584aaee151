#!/usr/bin/env bash
# Copies the CustomResourceDefinitions the Helm chart's optional objects are validated against into
# ${IMGSWEEP_TOOLS_DIR:-$HOME/.cache/imgsweep/tools}/crds/ (tests/integration/test_helm_chart.py reads them):
#
#   ServiceMonitor, PodMonitor, PrometheusRule   monitoring.coreos.com/v1   prometheus-operator's Go module
#   ScaledObject                                  keda.sh/v1alpha1           KEDA's Go module
#
# Both projects publish their CRDs (with the openAPIV3Schema the API server enforces) inside their Go modules,
# so they come through the Go module proxy at a pinned version with `go mod download`, checked against the
# Go checksum database like any module. Idempotent: when the pinned versions are already there it does nothing.
set -euo pipefail

PROMETHEUS_OPERATOR_MODULE="github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION="v0.85.0"
KEDA_MODULE="github.com/kedacore/keda/v2"
KEDA_VERSION="v2.21.0"

tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
crds_dir="${tools_dir}/crds"
stamp="${crds_dir}/VERSIONS"
wanted="${PROMETHEUS_OPERATOR_MODULE}@${PROMETHEUS_OPERATOR_VERSION}
${KEDA_MODULE}@${KEDA_VERSION}"

if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
    echo "${crds_dir}"
    exit 0
fi

go_bin="${GO:-}"
if [[ -z "${go_bin}" ]]; then
    if command -v go >/dev/null 2>&1; then
        go_bin="$(command -v go)"
    elif [[ -x /usr/local/go/bin/go ]]; then
        go_bin=/usr/local/go/bin/go
    else
        echo "fetch-crd-schemas.sh: Go is needed to download the CRD modules: install Go (https://go.dev/doc/install)" >&2
        exit 1
    fi
fi

module_dir() {
    # `go mod download -json` prints the module's directory in the module cache ("Dir": "...").
    local json
    json="$(cd "${TMPDIR:-/tmp}" && "${go_bin}" mod download -json "$1")"
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"${json}"
}

echo "fetch-crd-schemas.sh: downloading ${PROMETHEUS_OPERATOR_MODULE}@${PROMETHEUS_OPERATOR_VERSION} and ${KEDA_MODULE}@${KEDA_VERSION}" >&2
prometheus_operator="$(module_dir "${PROMETHEUS_OPERATOR_MODULE}@${PROMETHEUS_OPERATOR_VERSION}")"
keda="$(module_dir "${KEDA_MODULE}@${KEDA_VERSION}")"

staging="$(mktemp -d "${tools_dir}/.crds.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT
for kind in servicemonitors podmonitors prometheusrules; do
    cp "${prometheus_operator}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml" "${staging}/"
done
cp "${keda}/config/crd/bases/keda.sh_scaledobjects.yaml" "${staging}/"
chmod 0644 "${staging}"/*.yaml  # the module cache is read-only; the copies need not be
printf '%s' "${wanted}" >"${staging}/VERSIONS"
chmod 0755 "${staging}"
rm -rf "${crds_dir}"
mv "${staging}" "${crds_dir}"
trap - EXIT
echo "${crds_dir}"
