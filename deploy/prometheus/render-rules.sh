#!/usr/bin/env bash
# Writes deploy/prometheus/imgsweep-rules.yaml: the Helm chart's rules (helm/imgsweep/templates/_rules.tpl)
# rendered with the chart's default values, i.e. the spec of its PrometheusRule. The chart's template is the
# one source; this file is what Prometheus outside Kubernetes (deploy/compose.yaml) and promtool's tests load.
#
#   deploy/prometheus/render-rules.sh            rewrite the file (after changing the template)
#   deploy/prometheus/render-rules.sh --stdout   print it instead (tests/integration/test_helm_chart.py
#                                                compares this with the file)
#
# Needs helm (deploy/tools/install-helm.sh; $HELM, else ${IMGSWEEP_TOOLS_DIR:-~/.cache/imgsweep/tools}/bin/helm,
# else helm on PATH).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
helm="${HELM:-}"
if [[ -z "${helm}" ]]; then
    if [[ -x "${tools_dir}/bin/helm" ]]; then helm="${tools_dir}/bin/helm"; else helm="$(command -v helm || true)"; fi
fi
if [[ -z "${helm}" ]]; then
    echo "render-rules.sh: helm not found: run deploy/tools/install-helm.sh (make tools does)" >&2
    exit 1
fi

# The PrometheusRule's spec: everything after its `spec:` line, two spaces less indented.
rules="$(
    "${helm}" template imgsweep "${repo}/helm/imgsweep" --set prometheusRule.enabled=true \
        --show-only templates/prometheusrule.yaml \
        | sed -n '/^spec:$/,$p' | sed '1d; s/^  //'
)"
if [[ "${1:-}" == --stdout ]]; then
    printf '%s\n' "${rules}"
else
    printf '%s\n' "${rules}" >"${repo}/deploy/prometheus/imgsweep-rules.yaml"
    echo "wrote deploy/prometheus/imgsweep-rules.yaml" >&2
fi
