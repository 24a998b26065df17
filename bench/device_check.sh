#!/usr/bin/env bash
# The one prepared run for the GPU machine (H100/H200: torch 2.11 + CUDA 13.0, Python 3.12,
# 16 cores, no network). In order of importance, each step only if the time budget still has
# room for it: build the kernels there; the kernel tests (both CUDA augmentation variants);
# a C++ argument error must reach Python; the kernel benchmarks; training side by side with
# fastai; the other CUDA tests; compute-sanitizer; the > 2^31-element checks. A short table last.
#
#   bash bench/device_check.sh
#
# Results: $OUT/summary.txt and $OUT/logs.tgz (OUT defaults to /tmp/device_check; the device
# tool brings back at most 8 files). DEVICE_CHECK_BUDGET: seconds the whole script may take
# (default 450). fastai is not installed on the GPU machine and it has no network: carry its
# pure-python wheels in .whl/ (see bench/bench_train.py's docstring); without them only our
# side of the training comparison runs.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-/tmp/device_check}
LOGS=$(mktemp -d /tmp/device_check_logs.XXXX)
SUMMARY="$LOGS/summary.txt"
BUDGET=${DEVICE_CHECK_BUDGET:-450}
mkdir -p "$RESULTS"
: >"$SUMMARY"
trap 'tar czf "$RESULTS/logs.tgz" -C "$LOGS" . 2>/dev/null; cp "$SUMMARY" "$RESULTS/"' EXIT
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export FASTCORE_EXT_HOME=/tmp/fastcore_ext_home

note() { echo "$*" | tee -a "$SUMMARY"; }
# have NAME S: true when at least S seconds of the budget are left (else notes the skip)
have() {
  if [ $((BUDGET - SECONDS)) -ge "$2" ]; then return 0; fi
  note "$(printf '%-22s' "$1")skipped: $((BUDGET - SECONDS)) s of the budget left"
  return 1
}
# cap S: a step's timeout, S or what is left of the budget
cap() { local left=$((BUDGET - SECONDS - 5)); echo $(($1 < left ? $1 : left)); }
failures() { grep -E "^(FAILED|ERROR)|crashed" "$1" | head -"$2" | cut -c1-200 | tee -a "$SUMMARY"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
"$PY" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "python", sys.version.split()[0], torch.cuda.get_device_name(0))'
XDIST=""
"$PY" -c "import xdist" 2>/dev/null && XDIST="-n 8"  # a crashing test takes down one worker

# 1. Build in place for this GPU (never carry a build from another machine).
t0=$SECONDS
rm -rf build fastcore_ext/_C*.so
if ! TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 FORCE_CUDA=1 "$PY" setup.py -q build_ext --inplace \
  >"$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  note "BUILD FAILED"
  exit 1
fi
note "build                 $((SECONDS - t0)) s"
# The toolchain that built it and the C++ runtime it loads (a C++ exception crashed the
# process on this machine's build in 2026-11; torch 2.11 + gcc 12 elsewhere did not).
note "compiler              $(${CXX:-c++} --version | head -1)"
ldd fastcore_ext/_C*.so | grep -E "stdc|gcc_s|gomp" | sed 's/^\s*/                      /' \
  | tee -a "$SUMMARY"

# 2. The kernels' test files in full (CPU and CUDA, CPU vs CUDA, default variant row4), then
#    the CUDA augmentation tests again with the other variant (pixel).
if have "kernel tests" 60; then
  t0=$SECONDS
  timeout "$(cap 150)" "$PY" -m pytest -q -p no:cacheprovider $XDIST -rfE --tb=short \
    tests/test_augment_normalize.py tests/test_optim.py tests/test_schedule.py \
    tests/test_augment.py tests/test_ext.py >"$LOGS/tests_kernels.log" 2>&1
  note "kernel tests          rc=$?  $(tail -1 "$LOGS/tests_kernels.log")  $((SECONDS - t0)) s"
  failures "$LOGS/tests_kernels.log" 20
fi
if have "augment cuda (pixel)" 40; then
  t0=$SECONDS
  FASTCORE_EXT_AUGMENT_CUDA=pixel timeout "$(cap 90)" "$PY" -m pytest -q -p no:cacheprovider \
    $XDIST -rfE --tb=short tests/test_augment_normalize.py \
    -k "cuda and not over_2_31 and not variant" >"$LOGS/tests_pixel.log" 2>&1
  note "augment cuda (pixel)  rc=$?  $(tail -1 "$LOGS/tests_pixel.log")  $((SECONDS - t0)) s"
  failures "$LOGS/tests_pixel.log" 10
fi

# 3. A C++ argument check (TORCH_CHECK) must reach Python as an exception, never a crash; on a
#    crash, a native backtrace from cuda-gdb (it debugs host code too).
cat >"$LOGS/throw_check.py" <<'PYEOF'
# torch.ops directly: the Python wrapper would catch these before the C++ checks do
import torch
import fastcore_ext.ops  # noqa: F401  (loads the kernels)
op = torch.ops.fastcore_ext.augment_normalize
im = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
m = torch.eye(3).expand(2, 3, 3).contiguous()
bad_light = torch.tensor([[0.0, 1.0], [0.5, 1.0]])
cases = [("TORCH_CHECK", im.float(), None), ("TORCH_CHECK_VALUE", im, bad_light)]
for name, images, light in cases:
    try:
        op(images, m, 4, 4, [0.5] * 3, [0.2] * 3, light, "bilinear", "zeros", torch.float32, False)
        print(name, "did not raise")
    except Exception as e:
        print(name, "->", type(e).__name__, str(e).splitlines()[0][:60])
PYEOF
if have "C++ error -> Python" 20; then
  export PYTHONPATH="$PWD"  # the script lives outside the repository
  timeout 60 "$PY" "$LOGS/throw_check.py" >"$LOGS/throw_check.log" 2>&1
  rc=$?
  note "C++ error -> Python   rc=$rc  $(tr '\n' ' ' <"$LOGS/throw_check.log" | cut -c1-220)"
  if [ $rc -ne 0 ] && command -v cuda-gdb >/dev/null && have "cuda-gdb backtrace" 60; then
    timeout "$(cap 90)" cuda-gdb -q -batch -ex run -ex bt --args "$PY" "$LOGS/throw_check.py" \
      >"$LOGS/throw_gdb.log" 2>&1
    grep -E "^#[0-9]+ " "$LOGS/throw_gdb.log" | head -25 | cut -c1-200 | tee -a "$SUMMARY"
  fi
fi

# 4. Kernel benchmarks (each bench file prints its own table).
if have "kernel benchmarks" 60; then
  t0=$SECONDS
  timeout "$(cap 120)" "$PY" -m pytest -q -s -p no:cacheprovider bench/bench_augment.py \
    bench/bench_optim.py --benchmark-columns=median,iqr,rounds \
    --benchmark-json="$LOGS/bench.json" >"$LOGS/bench.log" 2>&1
  note "kernel benchmarks     rc=$?  $((SECONDS - t0)) s"
fi

# 5. Training end to end, side by side with fastai (bench/bench_train.py: resnet34 at 224 px,
#    batch 64, one round of 2 epochs per precision).
FASTAI_SITE=""
if ls .whl/*.whl >/dev/null 2>&1 && "$PY" -m pip install -q --no-index --no-deps --no-compile \
  --no-cache-dir --target /tmp/fastai_site .whl/*.whl >"$LOGS/fastai_install.log" 2>&1; then
  FASTAI_SITE=/tmp/fastai_site
fi
if have "train vs fastai" 90; then
  t0=$SECONDS
  PYTHONPATH="$FASTAI_SITE" BENCH_TRAIN_ROUNDS=1 BENCH_TRAIN_EPOCHS=2 BENCH_TRAIN_TIMEOUT=150 \
    BENCH_TRAIN_PRECISIONS=${BENCH_TRAIN_PRECISIONS:-fp32,fp16} timeout "$(cap 280)" \
    "$PY" -m pytest -q -s -p no:cacheprovider bench/bench_train.py >"$LOGS/bench_train.log" 2>&1
  note "train vs fastai       rc=$?  fastai wheels: ${FASTAI_SITE:-none}  $((SECONDS - t0)) s"
fi

# 6. Every other test that has a CUDA variant.
if have "other cuda tests" 40; then
  t0=$SECONDS
  timeout "$(cap 90)" "$PY" -m pytest -q -p no:cacheprovider $XDIST -rfE --tb=short tests \
    -k cuda --ignore tests/test_augment_normalize.py --ignore tests/test_optim.py \
    --ignore tests/test_schedule.py --ignore tests/test_augment.py >"$LOGS/tests_rest.log" 2>&1
  note "other cuda tests      rc=$?  $(tail -1 "$LOGS/tests_rest.log")  $((SECONDS - t0)) s"
  failures "$LOGS/tests_rest.log" 20
fi

# 7. CUDA kernel tests under compute-sanitizer (memcheck), the caching allocator off so that
#    out-of-bounds accesses land outside any allocation.
if command -v compute-sanitizer >/dev/null && have "compute-sanitizer" 40; then
  t0=$SECONDS
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(cap 80)" compute-sanitizer --tool memcheck \
    --error-exitcode 99 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_augment_normalize.py tests/test_optim.py \
    -k "cuda and not over_2_31 and (perspective or non_contiguous or tiny_images or empty \
or variants or thousands or zero_size)" >"$LOGS/sanitizer.log" 2>&1
  note "compute-sanitizer     rc=$?  $(grep -E 'ERROR SUMMARY' "$LOGS/sanitizer.log" | tail -1) \
$(tail -1 "$LOGS/sanitizer.log" | cut -c1-80)  $((SECONDS - t0)) s"
fi

# 8. Index overflow: tensors of more than 2^31 elements (9-17 GB of GPU memory).
if have "> 2^31 elements" 20; then
  t0=$SECONDS
  timeout "$(cap 60)" "$PY" -m pytest -q -p no:cacheprovider tests/test_augment_normalize.py \
    tests/test_optim.py -k over_2_31 >"$LOGS/tests_large.log" 2>&1
  note "> 2^31 elements       rc=$?  $(tail -1 "$LOGS/tests_large.log")  $((SECONDS - t0)) s"
fi

echo
echo "================ device check summary ($SECONDS s) ================"
cat "$SUMMARY"
echo "---------------- kernel benchmarks (bench.log in logs.tgz) ----------------"
awk '/^augment_normalize on |^Optimizer step incl/ {show=1} /^(PASSED|FAILED|=|-{10})/ {show=0} show' \
  "$LOGS/bench.log" 2>/dev/null | head -60
echo "---------------- training (bench_train.log in logs.tgz) ----------------"
grep -vE "^\s*$|^(PASSED|SKIPPED)|warnings summary|Warning|warn\(" "$LOGS/bench_train.log" \
  2>/dev/null | tail -30
