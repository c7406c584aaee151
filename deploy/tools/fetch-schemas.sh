#!/usr/bin/env bash
# Copies the published schemas the deployment artifacts are validated against into
# ${IMGSWEEP_TOOLS_DIR:-$HOME/.cache/imgsweep/tools}/schemas/, where the tests read them:
#
#   ServiceMonitor, PodMonitor, PrometheusRule  CRDs   prometheus-operator's Go module   (helm/imgsweep)
#   ScaledObject                                CRD    KEDA's Go module                  (helm/imgsweep)
#   compose-spec.json                           JSON Schema of the Compose file format,
#                                                      compose-go's Go module             (deploy/compose.yaml)
#
# Each project publishes these files inside its Go module, so they come through the Go module proxy at a pinned
# version with `go mod download`, checked against the Go checksum database like any module.
# Idempotent: when the pinned versions are already there it only prints the directory.
set -euo pipefail

PROMETHEUS_OPERATOR="github.com/prometheus-operator/prometheus-operator@v0.85.0"
KEDA="github.com/kedacore/keda/v2@v2.21.0"
COMPOSE_GO="github.com/compose-spec/compose-go/v2@v2.16.2"

tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
schemas_dir="${tools_dir}/schemas"
stamp="${schemas_dir}/VERSIONS"
wanted="$(printf '%s\n' "${PROMETHEUS_OPERATOR}" "${KEDA}" "${COMPOSE_GO}")"

if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
    echo "${schemas_dir}"
    exit 0
fi

go_bin="${GO:-}"
if [[ -z "${go_bin}" ]]; then
    if command -v go >/dev/null 2>&1; then
        go_bin="$(command -v go)"
    elif [[ -x /usr/local/go/bin/go ]]; then
        go_bin=/usr/local/go/bin/go
    else
        echo "fetch-schemas.sh: Go is needed to download the schema modules: install Go (https://go.dev/doc/install)" >&2
        exit 1
    fi
fi

module_dir() {
    # `go mod download -json` prints the module's directory in the module cache ("Dir": "...").
    local json
    json="$(cd "${TMPDIR:-/tmp}" && "${go_bin}" mod download -json "$1")"
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"${json}"
}

echo "fetch-schemas.sh: downloading ${PROMETHEUS_OPERATOR}, ${KEDA}, ${COMPOSE_GO}" >&2
prometheus_operator="$(module_dir "${PROMETHEUS_OPERATOR}")"
keda="$(module_dir "${KEDA}")"
compose_go="$(module_dir "${COMPOSE_GO}")"

mkdir -p "${tools_dir}"
staging="$(mktemp -d "${tools_dir}/.schemas.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT
for kind in servicemonitors podmonitors prometheusrules; do
    cp "${prometheus_operator}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml" "${staging}/"
done
cp "${keda}/config/crd/bases/keda.sh_scaledobjects.yaml" "${staging}/"
cp "${compose_go}/schema/compose-spec.json" "${staging}/"
chmod 0644 "${staging}"/*  # the module cache is read-only; the copies need not be
printf '%s' "${wanted}" >"${staging}/VERSIONS"
chmod 0755 "${staging}"
rm -rf "${schemas_dir}"
mv "${staging}" "${schemas_dir}"
trap - EXIT
echo "${schemas_dir}"
