#!/usr/bin/env bash
# Fetch, where pip works, the wheels that bench/device_check.sh installs on the GPU machine
# (Python 3.12, no network there): fastai 2.8.12 and those of its pure-python needs that the
# machine's image lacks (its package list: KINDS.md of the device tool),
# and TorchCodec for JPEG decoding on the GPU. Into .whl/ (git-ignored); the device call then
# names .whl in `carry`. About 12 MB.
#
#   bash bench/fetch_device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform any)
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d .whl \
  fastai==2.8.12 fastcore==2.2.41 fastprogress==1.0.3 fastdownload==0.0.8 \
  fasttransform==0.0.5 plum-dispatch==2.9.0 beartype==0.23.1 torchcodec==0.17.0
ls -1 .whl
du -sh .whl
