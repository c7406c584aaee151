#!/usr/bin/env bash
# Installs what builds and runs imgsweep's container image without a Docker engine: podman and buildah (the
# build), runc (the runtime), mmdebstrap (the Debian base image, made locally from Debian's packages), all
# Debian packages, and writes the podman configuration this kind of machine needs to
# ${IMGSWEEP_TOOLS_DIR:-$HOME/.cache/imgsweep/tools}/podman/containers.conf.
#
# The configuration is used through CONTAINERS_CONF (deploy/image/build.sh and the container tests set it); the
# machine's own /etc/containers is left alone. What it sets, and why (docs/decisions/0004-container-image-base.md):
#   runtime = "runc"           crun refuses hosts with hybrid cgroups (v1 controllers plus a v2 mount)
#   cgroup_manager = "cgroupfs" no systemd runs here to manage cgroups
#   netns = "host"             the default bridge network rewrites the host's firewall rules: never use it
#   default_ulimits            podman asks for nofile/nproc above what this host allows, and runc then fails
#                              with "error setting rlimit ... operation not permitted"; these are the host's own
#                              hard limits (nproc at most kernel.pid_max, the most runc could raise it to here)
#
# Idempotent and fast: when the tools are on PATH and the configuration is already the one this machine needs,
# it only prints the podman version.
set -euo pipefail

tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
conf="${tools_dir}/podman/containers.conf"
packages=(podman buildah runc mmdebstrap uidmap)

nofile="$(ulimit -Hn)"
nproc="$(ulimit -Hu)"
pid_max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)"
[[ "${nofile}" == unlimited ]] && nofile=1048576
[[ "${nproc}" == unlimited || "${nproc}" -gt "${pid_max}" ]] && nproc="${pid_max}"

wanted_conf="$(cat <<EOF
# Written by deploy/tools/install-podman.sh for this machine; used through CONTAINERS_CONF.
[containers]
netns = "host"
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)"

missing=()
for tool in podman buildah runc mmdebstrap; do
    command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
done

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-podman.sh: ${missing[*]} not found and no apt-get: install podman, buildah, runc and" \
            "mmdebstrap with your system's package manager" >&2
        exit 1
    fi
    sudo_cmd=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "install-podman.sh: run as root: apt-get update && apt-get install ${packages[*]}" >&2
            exit 1
        fi
        sudo_cmd=(sudo)
    fi
    echo "install-podman.sh: installing ${packages[*]} (missing: ${missing[*]})" >&2
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

if [[ ! -f "${conf}" || "$(cat "${conf}")" != "${wanted_conf}" ]]; then
    mkdir -p "$(dirname "${conf}")"
    printf '%s\n' "${wanted_conf}" >"${conf}.tmp"
    mv "${conf}.tmp" "${conf}"
    echo "install-podman.sh: wrote ${conf}" >&2
fi

CONTAINERS_CONF="${conf}" podman --version
