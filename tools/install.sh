#!/usr/bin/env bash
# Create .venv at the repository root and install narspeech (+ test extras) with a torch/torchaudio pair that
# loads together. Override the pins for your platform/CUDA: TORCH_SPEC="torch==2.5.1" TORCHAUDIO_SPEC=... tools/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
if ! .venv/bin/python -c "import torch, torchaudio" 2>/dev/null; then
    pip install -q "${TORCH_SPEC:-torch==2.14.1}"
    # torchaudio's wheel pins an exact torch; --no-deps keeps the torch above (this pair is tested together)
    pip install -q --no-deps "${TORCHAUDIO_SPEC:-torchaudio==2.11.0}"
fi
pip install -q -e ".[test]"
.venv/bin/python -c "import narspeech, torch, torchaudio; print('narspeech', narspeech.__version__, 'torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
