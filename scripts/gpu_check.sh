#!/usr/bin/env bash
# The checks that need a GPU, as one script: the whole test suite on the GPU machine (tests run
# on CUDA wherever train.device is auto; tests/test_cuda.py compares graph replay with the eager
# step, and the hand-written backward with autograd, on the device), then `initlab bench` there.
# GPU machines here have no network: MNIST travels gzipped in mnist-gz/ (git ignores it; name
# it in the device tool's carry): for each IDX file X in ~/.cache/initlab/MNIST/raw,
# `gzip -c X > mnist-gz/X.gz`.
# pytest and hypothesis, if the machine's python lacks them, travel the same way:
# `pip install --target .gpu-pydeps pytest hypothesis rich` here, then carry .gpu-pydeps.
# Results go to $OUT (default: the current directory). PYTHON defaults to python3.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-.}
if [ -d mnist-gz ]; then
  root="$PWD/.mnist-gpu-check"
  mkdir -p "$root/MNIST/raw"
  for f in mnist-gz/*.gz; do gunzip -c "$f" > "$root/MNIST/raw/$(basename "$f" .gz)"; done
  export INITLAB_DATA="$root" INITLAB_TEST_DATA="$root"
fi
if [ -d .gpu-pydeps ]; then
  export PYTHONPATH="$PWD/.gpu-pydeps${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu-tests.txt"
tests=${PIPESTATUS[0]}
$PY -m initlab bench --device cuda --out "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/gpu-bench.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, bench exit $bench" | tee -a "$OUT/gpu.txt"
exit $(( tests || bench ))
