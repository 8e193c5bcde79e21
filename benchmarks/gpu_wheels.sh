#!/usr/bin/env bash
# Download, into .whl/ at the repository root, the wheels that netc and its tests need and
# the device tool's GPU machine lacks (nothing can be fetched there): CPython 3.12, x86-64
# manylinux, no dependencies resolved (the image already holds the rest: numpy, jax, flax,
# optax, orbax-checkpoint, chex, etils, absl-py, protobuf, psutil, pytest, hypothesis, onnx,
# onnxruntime ... /work/.library/device/KINDS.md lists them). The versions are the ones
# netc is tested with here. .whl/ is ignored by git; benchmarks/gpu_check.sh installs it
# on the device machine.
#
#     bash benchmarks/gpu_wheels.sh            # then run(..., carry=[".whl"]): README.md
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  lark==1.3.1             # netc.dsl's parser
  dm-pix==0.4.5           # augment (needs chex: in the image)
  grain==0.2.18           # streamed data (absl-py, cloudpickle, etils, numpy, protobuf: image)
  array-record==0.8.6     # grain's and netc's ArrayRecord sources
  portpicker==1.6.0       # grain
  optuna==5.0.0           # netc tune (PyYAML, tqdm, numpy, packaging: image)
  alembic==1.20.1         # optuna
  sqlalchemy==2.1.9       # optuna, alembic
  mako==1.4.3             # alembic (MarkupSafe: image)
  colorlog==6.12.0        # optuna
)
PLATFORMS=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 \
         manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done

mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
# one version of each (two stop the device's install): drop what the list no longer names
for f in .whl/*.whl; do
  name=$(basename "$f" | cut -d- -f1 | tr '[:upper:]_' '[:lower:]-')
  version=$(basename "$f" | cut -d- -f2)
  printf '%s\n' "${WHEELS[@]}" | sed 's/ *#.*//' | tr '[:upper:]_' '[:lower:]-' \
    | grep -qx "$name==$version" || { echo "removing stale $f"; rm -f "$f"; }
done
ls -l .whl
du -sh .whl
