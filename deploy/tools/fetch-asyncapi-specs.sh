#!/usr/bin/env bash
# Fetches the official AsyncAPI JSON Schemas (npm package @asyncapi/specs, pinned) into the tools cache,
# so tests can validate docs/contracts/asyncapi.json with a real validator. Idempotent; offline once cached.
set -euo pipefail
VERSION=6.11.1
TOOLS_DIR=${IMGSWEEP_TOOLS_DIR:-$HOME/.cache/imgsweep/tools}
DEST="$TOOLS_DIR/asyncapi-specs-$VERSION"
if [ -f "$DEST/schemas/3.0.0-without-\$id.json" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-asyncapi-specs: npm is missing (Debian: apt-get install npm); it downloads @asyncapi/specs@$VERSION" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "@asyncapi/specs@$VERSION" --silent >/dev/null 2>&1)
mkdir -p "$DEST"
tar -xzf "$work"/asyncapi-specs-*.tgz -C "$work"
cp -r "$work/package/schemas" "$DEST/"
echo "AsyncAPI specs $VERSION in $DEST"
