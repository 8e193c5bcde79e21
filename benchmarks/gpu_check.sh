#!/usr/bin/env bash
# Issue #14's GPU check in one command, from the repository root on the device tool's GPU
# machine (benchmarks/README.md, "On a GPU"): installs the wheels that benchmarks/gpu_wheels.sh
# put in .whl/ into /tmp/site and netc itself without dependencies, prints nvidia-smi and
# jax.devices(), then runs benchmarks/gpu_check.py (tests, moons/LeNet-5/ResNet-50 against
# hand-written Flax, utilisation, netc's loop), which writes its files to $OUT.
#
#     bash benchmarks/gpu_check.sh [--budget 400]      # on the GPU machine ($OUT is set)
#     bash benchmarks/gpu_check.sh --dry-run           # here, on CPU: tiny sizes, 1 repeat
#
# --dry-run installs nothing into this interpreter: it checks that .whl/ installs as a
# Python 3.12 set into a scratch folder, and runs the same steps with the installed netc.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
DRY=0
for arg in "$@"; do [ "$arg" = --dry-run ] && DRY=1; done
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1  # all of it also in check.log (a killed run keeps it)
TEE=$!
PLATFORMS="--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_28_x86_64 --platform manylinux_2_31_x86_64
  --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64"

if ls .whl/*.whl >/dev/null 2>&1; then
  if [ $DRY = 1 ]; then
    scratch=$(mktemp -d)
    # shellcheck disable=SC2086
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$scratch" \
      --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS .whl/*.whl \
      && echo "dry run: .whl/ installs for Python 3.12: $(ls "$scratch" | grep -c dist-info) packages" \
      || { echo "dry run: .whl/ does not install as a set"; exit 1; }
    rm -rf "$scratch"
  else
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
elif [ $DRY = 0 ]; then
  echo "no wheels in .whl/ (run benchmarks/gpu_wheels.sh here, and carry .whl): going on"
fi

# netc itself: installed already (here), else editable without dependencies, else a folder
# of links laid out as the package-dir mapping says (netc = api/, netc.dsl = dsl/ ...)
if ! (cd /tmp && $PY -c "import netc.runtime.cli" 2>/dev/null); then
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>"$OUT/install.err"
  if ! (cd /tmp && $PY -c "import netc.runtime.cli" 2>/dev/null); then
    echo "pip install -e . failed ($(tail -1 "$OUT/install.err")): netc from links in /tmp/netc-path"
    mkdir -p /tmp/netc-path/netc
    ln -sf "$PWD"/api/* /tmp/netc-path/netc/
    for sub in dsl compiler runtime; do ln -sfn "$PWD/$sub" "/tmp/netc-path/netc/$sub"; done
    export PYTHONPATH=/tmp/netc-path${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
rm -f "$OUT/install.err"
(cd /tmp && $PY -c "import netc.runtime.cli, netc.runtime.stream, lark, grain, dm_pix, optuna, array_record; print('imports ok: netc from', netc.__file__)") \
  || echo "an import failed: the check goes on and reports what breaks"

command -v nvidia-smi >/dev/null && nvidia-smi
(cd /tmp && XLA_PYTHON_CLIENT_PREALLOCATE=false $PY -c "import jax; print('jax', jax.__version__, jax.default_backend(), jax.devices())")

$PY benchmarks/gpu_check.py --out "$OUT" "$@"
rc=$?
exec >&- 2>&-  # tee ends with its input: wait for it to write the last lines
wait "$TEE"
exit $rc
