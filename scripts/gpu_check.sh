#!/usr/bin/env bash
# The checks that need a GPU, as one script, most important first, each under its own time
# limit (a GPU lease is short): tests/test_cuda.py (graph replay vs the eager step, the
# hand-written backward vs autograd, dropout masks under a graph), `initlab bench` on the
# device, one real run of configs/kaiming.yaml there, then the whole test suite (tests run on
# CUDA wherever train.device is auto).
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
export PYTHONUNBUFFERED=1
if [ -d mnist-gz ]; then
  root="$PWD/.mnist-gpu-check"
  mkdir -p "$root/MNIST/raw"
  for f in mnist-gz/*.gz; do gunzip -c "$f" > "$root/MNIST/raw/$(basename "$f" .gz)"; done
  export INITLAB_DATA="$root" INITLAB_TEST_DATA="$root"
fi
if [ -d .gpu-pydeps ]; then
  export PYTHONPATH="$PWD/.gpu-pydeps${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # initlab from this tree, uninstalled

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.txt
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.txt"
  echo "== $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  return $rc
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$OUT/summary.txt"
step cuda-tests "${CUDA_TESTS_LIMIT:-90}" $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  tests/test_watch.py -k "cuda or graph or CUDA"
cuda=$?
step bench "${BENCH_LIMIT:-150}" $PY -m initlab bench --device cuda --out "$OUT/bench-cuda.json"
bench=$?
step run "${RUN_LIMIT:-60}" $PY -m initlab run configs/kaiming.yaml --out "$PWD/.gpu-runs"
run=$?
step tests "${TESTS_LIMIT:-120}" $PY -m pytest -q -p no:cacheprovider tests
tests=$?
echo "cuda-tests $cuda, bench $bench, run $run, tests $tests" | tee -a "$OUT/summary.txt"
exit $(( cuda || bench || run || tests ))
