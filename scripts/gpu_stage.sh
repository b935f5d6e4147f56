#!/usr/bin/env bash
# Copies this checkout's tracked files (and the current commit id) into DEST, the
# git-ignored folder of the main checkout that the device tool carries (docs/gpu.md).
set -euo pipefail
dest=${1:?usage: scripts/gpu_stage.sh DEST}
cd "$(dirname "$0")/.."
rm -rf "$dest" && mkdir -p "$dest"
git ls-files -z | xargs -0 cp --parents -t "$dest"
git rev-parse HEAD > "$dest/COMMIT"
