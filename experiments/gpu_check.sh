#!/usr/bin/env bash
# The GPU check: on a machine with CUDA, the CUDA-marked tests, then every benchmark on the GPU,
# in under ~5 minutes on one modern GPU. Prints one summary at the end.
#   bash experiments/gpu_check.sh            (after `make install`; PY=... to use another Python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d)}
$PY - <<'PYEOF' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU path"
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
PYEOF
step() {  # step NAME COMMAND...: run, keep the output, remember the status
  local name=$1; shift
  echo "== $name: $*"
  if timeout 240 "$@" >"$OUT/$name.txt" 2>&1; then status[$name]=ok; else status[$name]="FAILED ($?)"; fi
  tail -n 25 "$OUT/$name.txt"
}
declare -A status
step tests      $PY -m pytest -q -m "cuda" tests
step bench_masks $PY experiments/bench_masks.py --device cuda --models lenet cnn resnet20 resnet18 --sparsity 0.5 0.8 0.95 --variants apply prune loop apply_u8 apply_float
step bench_level $PY experiments/bench_level.py --device cuda --models lenet resnet20 --epochs 2 --repeats 2 --extras bf16 compile fabric
step bench_data  $PY experiments/bench_data.py --device cuda --train-size 50000 --epochs 2
step bench_export $PY experiments/bench_export.py --device cuda
step bench_bert  $PY experiments/bench_bert.py --device cuda --steps 50
step bench_lanes $PY experiments/bench_lanes.py --device cuda --lanes 1 2 4 8 16 --steps 50 --compile --fig3
step bench_sparse $PY experiments/bench_sparse.py --device cuda --interval 100
step nm_kernels  $PY experiments/check_nm_gpu.py
step bench_structured $PY experiments/bench_structured.py --device cuda --batches 1 64 1024
echo
echo "== summary (full outputs in $OUT)"
for name in tests bench_masks bench_level bench_data bench_export bench_bert bench_lanes bench_sparse nm_kernels bench_structured; do printf '  %-12s %s\n' "$name" "${status[$name]}"; done
grep -h -E '^\||^compile|^Frankle|^choose|^the 2:4' "$OUT"/bench_*.txt "$OUT"/nm_kernels.txt
