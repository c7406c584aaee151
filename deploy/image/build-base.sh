#!/usr/bin/env bash
# Makes the image's base locally from Debian's packages, when no container registry can serve one: Debian 12
# (bookworm) with its python3 (3.11) and ca-certificates, bootstrapped by mmdebstrap and imported into podman's
# storage. Prints the base's reference, localhost/imgsweep-base:bookworm-python3-<recipe hash>.
#
# Cached: podman's storage keeps the base on the machine, and the tag carries a hash of this script, so the base
# is made again only when it is missing or this recipe changed (about 30 s; otherwise well under a second).
# Why this base: docs/decisions/0004-container-image-base.md.
#
#   IMGSWEEP_DEBIAN_MIRROR   the Debian mirror (default http://deb.debian.org/debian; security updates from
#                            its -security sibling)
set -euo pipefail

suite="bookworm"
mirror="${IMGSWEEP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="python3,ca-certificates"
# Fixed file dates, so the same package versions give the same tarball (mmdebstrap honours SOURCE_DATE_EPOCH).
export SOURCE_DATE_EPOCH=1735689600

tools_dir="${IMGSWEEP_TOOLS_DIR:-${HOME:?HOME or IMGSWEEP_TOOLS_DIR must be set}/.cache/imgsweep/tools}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${tools_dir}/podman/containers.conf}"
recipe="$(sha256sum "$0" | cut -c1-12)"
tag="localhost/imgsweep-base:${suite}-python3-${recipe}"

if podman image exists "${tag}"; then
    echo "${tag}"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/imgsweep-base.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
chmod 0755 "${work}"
echo "build-base.sh: bootstrapping Debian ${suite} with ${packages} from ${mirror}" >&2
# minbase: Essential packages plus apt, as Debian's own debian:bookworm-slim. Manuals, docs (but their
# copyright files) and translations are left out; merged /usr is laid out directly (no usrmerge and perl).
mmdebstrap --quiet --variant=minbase --include="${packages}" --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "${suite}" "${work}/rootfs.tar" \
    "deb ${mirror} ${suite} main" \
    "deb ${mirror} ${suite}-updates main" \
    "deb ${mirror}-security ${suite}-security main" >"${work}/mmdebstrap.log" 2>&1 \
    || { cat "${work}/mmdebstrap.log" >&2; exit 1; }
podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=imgsweep-base org.opencontainers.image.description=\"Debian ${suite} with python3, made by deploy/image/build-base.sh\"" \
    "${work}/rootfs.tar" "${tag}" >/dev/null
# A base made by an earlier recipe is no longer used by a new build.
for old in $(podman images --noheading --format '{{.Repository}}:{{.Tag}}' localhost/imgsweep-base); do
    [[ "${old}" == "${tag}" ]] || podman rmi "${old}" >/dev/null 2>&1 || true
done
echo "${tag}"
