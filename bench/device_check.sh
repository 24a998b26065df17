#!/usr/bin/env bash
# The one prepared run for the GPU machine (H100/H200: torch 2.11 + CUDA 13.0, Python 3.12,
# 16 cores, no network). It builds the kernels there, runs the CUDA tests (once more under
# compute-sanitizer with the caching allocator off), the index-overflow checks and the GPU
# benchmarks, and prints a short table last. Aim: under 6 minutes.
#
#   bash bench/device_check.sh            (full logs go to $OUT, or to /tmp/device_check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export FASTCORE_EXT_HOME="$OUT/home"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
"$PY" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "python", sys.version.split()[0], torch.cuda.get_device_name(0))'

# 1. Build in place for this GPU (never carry a build from another machine).
t0=$SECONDS
rm -rf build fastcore_ext/_C*.so
if ! TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 FORCE_CUDA=1 "$PY" setup.py -q build_ext --inplace \
  >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "BUILD FAILED"
  exit 1
fi
note "build                 $((SECONDS - t0)) s"

# 2. The kernels' test files in full (CPU and CUDA variants, CPU vs CUDA), then every other
#    test that has a CUDA variant. pytest-xdist, when there, runs them in 8 workers: faster,
#    and a crashing test takes down one worker, not the run.
XDIST=""
"$PY" -c "import xdist" 2>/dev/null && XDIST="-n 8"
t0=$SECONDS
timeout 300 "$PY" -m pytest -q -p no:cacheprovider $XDIST -rfE --tb=short \
  tests/test_augment_normalize.py tests/test_optim.py tests/test_schedule.py \
  tests/test_augment.py tests/test_ext.py >"$OUT/tests_kernels.log" 2>&1
note "kernel tests          rc=$?  $(tail -1 "$OUT/tests_kernels.log")  $((SECONDS - t0)) s"
grep -E "^(FAILED|ERROR)|crashed" "$OUT/tests_kernels.log" | head -20 | tee -a "$SUMMARY"
t0=$SECONDS
timeout 300 "$PY" -m pytest -q -p no:cacheprovider $XDIST -rfE --tb=short tests -k cuda \
  --ignore tests/test_augment_normalize.py --ignore tests/test_optim.py \
  --ignore tests/test_schedule.py --ignore tests/test_augment.py >"$OUT/tests_rest.log" 2>&1
note "other cuda tests      rc=$?  $(tail -1 "$OUT/tests_rest.log")  $((SECONDS - t0)) s"
grep -E "^(FAILED|ERROR)|crashed" "$OUT/tests_rest.log" | head -20 | tee -a "$SUMMARY"

# 2b. A C++ argument check (TORCH_CHECK) must reach Python as an exception, never a crash;
#     on a crash, a native backtrace from cuda-gdb (it debugs host code too).
cat >"$OUT/throw_check.py" <<'PYEOF'
import torch
from fastcore_ext import ops
im = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
m = torch.eye(3).expand(2, 3, 3).contiguous()
for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
    try:
        ops.augment_normalize(im.to(dev), m.to(dev), 4, mean=(0.5,) * 3, std=(0.2,) * 3,
                              lighting=torch.tensor([[0.0, 1.0], [0.5, 1.0]]).to(dev))
    except ValueError as e:
        print(dev, "raised ValueError:", str(e).splitlines()[0][:100])
PYEOF
timeout 60 "$PY" "$OUT/throw_check.py" >"$OUT/throw_check.log" 2>&1
rc=$?
note "C++ error -> Python   rc=$rc  $(tail -1 "$OUT/throw_check.log")"
if [ $rc -ne 0 ] && command -v cuda-gdb >/dev/null; then
  timeout 120 cuda-gdb -q -batch -ex run -ex bt -ex "info sharedlibrary" \
    --args "$PY" "$OUT/throw_check.py" >"$OUT/throw_gdb.log" 2>&1
  grep -E "^#[0-9]+ " "$OUT/throw_gdb.log" | head -25 | cut -c1-180 | tee -a "$SUMMARY"
fi

# 3. A subset of the CUDA kernel tests under compute-sanitizer (memcheck), with the caching
#    allocator off so that out-of-bounds accesses land outside any allocation.
t0=$SECONDS
if command -v compute-sanitizer >/dev/null; then
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 100 compute-sanitizer --tool memcheck \
    --error-exitcode 99 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_augment_normalize.py tests/test_optim.py \
    -k "cuda and not over_2_31 and (perspective or non_contiguous or tiny_images or empty \
or lighting_curve or thousands or zero_size or cpu_equals_cuda)" >"$OUT/sanitizer.log" 2>&1
  note "compute-sanitizer     rc=$?  $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1) \
$(tail -1 "$OUT/sanitizer.log")  $((SECONDS - t0)) s"
else
  note "compute-sanitizer     not installed"
fi

# 4. Index overflow: tensors of more than 2^31 elements (slow tests, 9-17 GB of GPU memory).
t0=$SECONDS
"$PY" -m pytest -q -p no:cacheprovider tests/test_augment_normalize.py tests/test_optim.py \
  -k over_2_31 >"$OUT/tests_large.log" 2>&1
note "> 2^31 elements       rc=$?  $(tail -1 "$OUT/tests_large.log")  $((SECONDS - t0)) s"

# 5. Benchmarks on the GPU (each bench file prints its own summary table).
t0=$SECONDS
"$PY" -m pytest -q -s -p no:cacheprovider bench/bench_augment.py bench/bench_optim.py \
  --benchmark-columns=median,iqr,rounds --benchmark-json="$OUT/bench.json" \
  >"$OUT/bench.log" 2>&1
note "benchmarks            rc=$?  $((SECONDS - t0)) s"

echo
echo "================ device check summary ================"
cat "$SUMMARY"
echo "---------------- benchmark tables (full log: $OUT/bench.log) ----------------"
awk '/^augment_normalize on |^Optimizer step incl/ {show=1} /^(PASSED|FAILED|=|-{10})/ {show=0} show' \
  "$OUT/bench.log" | head -60
