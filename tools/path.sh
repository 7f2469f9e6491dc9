#!/usr/bin/env bash
# Sourced by recipes: put the repository's .venv (made by tools/install.sh) on PATH when it exists.
narspeech_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -x "$narspeech_root/.venv/bin/narspeech" ]; then
    export PATH="$narspeech_root/.venv/bin:$PATH"
fi
command -v narspeech >/dev/null || { echo "narspeech is not installed: run $narspeech_root/tools/install.sh" >&2; exit 1; }
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0")) $*" >&2; }
export PYTHONUNBUFFERED=1
