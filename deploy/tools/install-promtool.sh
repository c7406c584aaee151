#!/usr/bin/env bash
# Installs promtool (Prometheus' rule and metrics checker) for the observability tests, without
# installing or starting a Prometheus server: the distribution's `prometheus` package is downloaded
# (not installed) and unpacked into a cache directory, and only its promtool binary is used.
#
#   IMGSWEEP_TOOLS_DIR   where to unpack (default: ~/.cache/imgsweep/tools); promtool ends up in $IMGSWEEP_TOOLS_DIR/bin
#
# Idempotent and fast: when $IMGSWEEP_TOOLS_DIR/bin/promtool (or a promtool on PATH) already runs, it only
# prints its version.
# Needs apt-get and dpkg-deb (Debian, Ubuntu). Elsewhere, put a promtool from a Prometheus release
# (https://prometheus.io/download/) on PATH or at $IMGSWEEP_TOOLS_DIR/bin/promtool.
set -euo pipefail

tools_dir="${IMGSWEEP_TOOLS_DIR:-$HOME/.cache/imgsweep/tools}"
bin_dir="$tools_dir/bin"
promtool="$bin_dir/promtool"

for candidate in "$promtool" promtool; do
    if "$candidate" --version >/dev/null 2>&1; then
        "$candidate" --version 2>&1 | head -n 1
        exit 0
    fi
done

for tool in apt-get dpkg-deb; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-promtool: $tool not found: this script needs Debian's or Ubuntu's apt." >&2
        echo "Install promtool another way (a Prometheus release from https://prometheus.io/download/," >&2
        echo "or your system's prometheus package) and put it on PATH or at $promtool." >&2
        exit 1
    fi
done

mkdir -p "$bin_dir"
# A scratch directory apt's unprivileged _apt user can write to (it cannot enter /root).
download_dir=$(mktemp -d "${TMPDIR:-/tmp}/imgsweep-promtool.XXXXXX")
trap 'rm -rf "$download_dir"' EXIT
chmod 0777 "$download_dir"
unpack_dir="$download_dir/unpacked"

# apt-get download needs no root, but fresh package lists do; a machine that never ran
# `apt-get update` (a fresh container) has none, so update once and try again.
if ! (cd "$download_dir" && apt-get download prometheus); then
    echo "install-promtool: download failed; updating the package lists and retrying" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update
    else
        echo "install-promtool: run 'apt-get update' as root, then this script again" >&2
        exit 1
    fi
    (cd "$download_dir" && apt-get download prometheus)
fi

deb=$(ls "$download_dir"/prometheus_*.deb)
dpkg-deb -x "$deb" "$unpack_dir"
cp "$unpack_dir/usr/bin/promtool" "$promtool.tmp"
chmod 0755 "$promtool.tmp"
mv "$promtool.tmp" "$promtool"

"$promtool" --version 2>&1 | head -n 1
echo "promtool installed at $promtool"
