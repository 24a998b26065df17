#!/usr/bin/env bash
# The one prepared run for the GPU machine (H100/H200: torch 2.11 + CUDA 13.0, Python 3.12,
# 16 cores, no network). In order of importance, each step only if the time budget still has
# room for it: build the kernels there; the kernel tests; training side by side with fastai
# (issue 14's GPU target) and one profiled fit of ours; why C++ exceptions crashed that
# machine's build in 2026-11 (a native backtrace, the C++ runtime loaded, the compiler, a
# -static-libstdc++ build); the CUDA augment variants (bench/dev/augment_normalize.cu); JPEG
# decoding on the GPU (TorchCodec's nvJPEG: tests, then CPU vs CUDA images/s); the kernel
# benchmarks; learn.compile eager vs compiled; the other CUDA tests; compute-sanitizer; the
# > 2^31-element checks. A short table last.
#
#   bash bench/fetch_device_wheels.sh     # here, once: fastai's and TorchCodec's wheels -> .whl/
#   bash bench/device_check.sh            # there, with .whl carried
#
# Results: $OUT/summary.txt and $OUT/logs.tgz (OUT defaults to /tmp/device_check; the device
# tool brings back at most 8 files). DEVICE_CHECK_BUDGET: seconds the whole script may take
# (default 450). fastai and TorchCodec are not in that machine's image (package list of
# 2026-11) and it has no network: bench/fetch_device_wheels.sh puts their wheels in .whl/
# (12 MB; TorchCodec's Linux wheel is the CUDA 13.0 build, nvJPEG bundled). Without them only
# our side of the training comparison runs and the CUDA decode tests skip, saying why.
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

# 1b. TorchCodec for JPEG decoding on the GPU (issue 16.5): the image's, else the carried
#     wheel. TorchCodec 0.14-0.16 are listed for torch >= 2.11 (stable ABI); that 0.17 loads
#     on this torch 2.11 is what this line finds out.
if ! "$PY" -c "import torchcodec.decoders" >/dev/null 2>&1 && ls .whl/torchcodec-*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/torchcodec_site .whl/torchcodec-*.whl >"$LOGS/torchcodec_install.log" 2>&1 \
    && export PYTHONPATH=/tmp/torchcodec_site${PYTHONPATH:+:$PYTHONPATH}
fi
note "torchcodec            $("$PY" -c 'import torchcodec, torch
from fastcore_ext.data.device_decode import cuda_jpeg_support as s
print(torchcodec.__version__, "CUDA JPEG:", s() or "yes")' 2>&1 | tail -1 | cut -c1-150)"

# 2. The kernels' test files in full (CPU and CUDA, CPU vs CUDA).
if have "kernel tests" 60; then
  t0=$SECONDS
  timeout "$(cap 150)" "$PY" -m pytest -q -p no:cacheprovider $XDIST -rfE --tb=short \
    tests/test_augment_normalize.py tests/test_optim.py tests/test_schedule.py \
    tests/test_augment.py tests/test_ext.py >"$LOGS/tests_kernels.log" 2>&1
  note "kernel tests          rc=$?  $(tail -1 "$LOGS/tests_kernels.log")  $((SECONDS - t0)) s"
  failures "$LOGS/tests_kernels.log" 20
fi

# 3. Training end to end, side by side with fastai: issue 14's GPU target (at least 4x
#    fastai's images/s, at least 85 % of our model-only rate). bench/bench_train.py: resnet34
#    at 224 px (presize 280), batch 64, 3 epochs, one round per precision, 5,040 training JPEGs
#    (demo_dataset(size=320, n_per_class=525)), our cache cold (the first epoch decodes the
#    JPEGs) and the first epoch reported apart. Then one profiled fit of ours (phases).
FASTAI_SITE=""
if ls .whl/*.whl >/dev/null 2>&1 && "$PY" -m pip install -q --no-index --no-deps --no-compile \
  --no-cache-dir --target /tmp/fastai_site .whl/*.whl >"$LOGS/fastai_install.log" 2>&1; then
  FASTAI_SITE=/tmp/fastai_site
fi
if have "train vs fastai" 90; then
  t0=$SECONDS
  PYTHONPATH="$FASTAI_SITE${PYTHONPATH:+:$PYTHONPATH}" BENCH_TRAIN_ROUNDS=1 BENCH_TRAIN_EPOCHS=3 \
    BENCH_TRAIN_TIMEOUT=150 BENCH_TRAIN_CACHE=cold \
    BENCH_TRAIN_PRECISIONS=${BENCH_TRAIN_PRECISIONS:-fp32,auto,fp16} timeout "$(cap 330)" \
    "$PY" -m pytest -q -s -p no:cacheprovider bench/bench_train.py -k "not test_model_only_step" \
    >"$LOGS/bench_train.log" 2>&1
  note "train vs fastai       rc=$?  fastai wheels: ${FASTAI_SITE:-none}  $((SECONDS - t0)) s"
  grep -E "x; images/s|of the model-only rate" "$LOGS/bench_train.log" | sed 's/^ */                      /' \
    | tee -a "$SUMMARY"
fi
if have "train phases" 40; then
  t0=$SECONDS
  DEMO=$(ls -d "$FASTCORE_EXT_HOME"/data/demo_n525_s320_seed0 2>/dev/null)
  if [ -n "$DEMO" ]; then
    FASTCORE_EXT_HOME=/tmp/fastcore_ext_phases timeout "$(cap 60)" "$PY" bench/bench_train.py \
      --run ours --data "$DEMO" --device cuda --precision auto --epochs 2 --profile \
      >"$LOGS/train_phases.log" 2>&1
    note "train phases          rc=$?  $(tail -1 "$LOGS/train_phases.log" | grep -o '"phases": {[^}]*}')  $((SECONDS - t0)) s"
  else
    note "train phases          skipped: no demo_n525_s320_seed0 under $FASTCORE_EXT_HOME/data"
  fi
fi

# 4. C++ exceptions (TORCH_CHECK) crashed this machine's build with SIGSEGV in 2026-11, CPU and
#    CUDA ops alike; not reproduced elsewhere with the same torch. What built the kernels and
#    torch, which C++ runtime the process maps, a native backtrace of the crash, and the same
#    check against a CPU-only build linked with -static-libstdc++ -static-libgcc.
{
  echo "== compiler: $(command -v "${CXX:-c++}") -> $(readlink -f "$(command -v "${CXX:-c++}")")"
  "${CXX:-c++}" --version | head -1
  echo "== .comment of _C (the compilers that made its objects)"
  readelf -p .comment fastcore_ext/_C*.so 2>&1 | grep -v "^$" | sort -u | head
  echo "== torch's build"
  "$PY" -c "import torch; print(torch.__config__.show())" | head -6
  echo "== ldd _C"
  ldd fastcore_ext/_C*.so
} >"$LOGS/toolchain.log" 2>&1
note "compiler              $(sed -n 2p "$LOGS/toolchain.log" | cut -c1-60)"
note "_C .comment           $(grep -o 'GCC: .*' "$LOGS/toolchain.log" | sort -u | tr '\n' ' ' | cut -c1-90)"
note "torch built with      $(grep -o 'GCC [0-9.]*\|clang [0-9.]*' "$LOGS/toolchain.log" | head -1)"
cat >"$LOGS/throw_check.py" <<'PYEOF'
# torch.ops directly (the Python wrapper would catch these first): every kind of C++ check,
# CPU and CUDA; prints which C++ runtime libraries the process has mapped.
import faulthandler, sys
faulthandler.enable()
import torch
import fastcore_ext.ops  # noqa: F401  (loads the kernels)
maps = {l.split()[-1] for l in open("/proc/self/maps") if "libstdc++" in l or "libgcc_s" in l}
print("maps:", " ".join(sorted(maps)), flush=True)
op = torch.ops.fastcore_ext.augment_normalize
for dev in ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]:
    im = torch.zeros(2, 3, 8, 8, dtype=torch.uint8, device=dev)
    m = torch.eye(3, device=dev).expand(2, 3, 3).contiguous()
    bad_light = torch.tensor([[0.0, 1.0], [0.5, 1.0]], device=dev)
    cases = [("TYPE", im.float(), None, "bilinear"), ("VALUE", im, None, "area")]
    if dev == "cpu":
        cases.append(("VALUE/kernel", im, bad_light, "bilinear"))
    for name, images, light, mode in cases:
        try:
            op(images, m, 4, 4, [0.5] * 3, [0.2] * 3, light, mode, "zeros", torch.float32, False)
            print(dev, name, "did not raise", flush=True)
        except Exception as e:
            print(dev, name, "->", type(e).__name__, flush=True)
    p = torch.zeros(4, device=dev)
    counter = torch.zeros(2, dtype=torch.int64, device=dev)
    hyper = torch.zeros(1, 6, dtype=torch.float64, device=dev)
    try:  # the optimizer op's own check (grad of another size than its param)
        torch.ops.fastcore_ext.fused_sgd_([p], [torch.zeros(5, device=dev)], [p.clone()],
            [0], hyper, torch.zeros(7, dtype=torch.float64, device=dev), counter, None, None)
        print(dev, "optim sizes did not raise", flush=True)
    except Exception as e:
        print(dev, "optim sizes ->", type(e).__name__, flush=True)
print("done")
PYEOF
throw_check() {  # throw_check LABEL PYTHONPATH
  PYTHONPATH="$2" timeout 60 "$PY" "$LOGS/throw_check.py" >"$LOGS/throw_$1.log" 2>&1
  local rc=$?
  note "$(printf '%-22s' "C++ error ($1)")rc=$rc  $(grep -v '^maps' "$LOGS/throw_$1.log" | grep -E -- '->|did not|done|Fatal' | tr '\n' ';' | cut -c1-200)"
  note "$(printf '%-22s' "  runtime mapped")$(grep '^maps' "$LOGS/throw_$1.log" | cut -c7-180)"
  return $rc
}
if have "C++ error -> Python" 30; then
  if ! throw_check shared "$PWD" && command -v cuda-gdb >/dev/null && have "backtrace" 60; then
    PYTHONPATH="$PWD" timeout "$(cap 90)" cuda-gdb -q -batch -ex "set pagination off" -ex run \
      -ex bt -ex "info sharedlibrary" --args "$PY" "$LOGS/throw_check.py" >"$LOGS/throw_gdb.log" 2>&1
    grep -E "^#[0-9]+ " "$LOGS/throw_gdb.log" | head -20 | cut -c1-160 | tee -a "$SUMMARY"
    grep -E "libstdc|libgcc_s" "$LOGS/throw_gdb.log" | head -4 | cut -c1-160 | tee -a "$SUMMARY"
  fi
  # the experiment: the CPU kernels alone (no GPU visible to setup.py), the C++ runtime linked in
  if have "static libstdc++" 60; then
    t0=$SECONDS
    rm -rf /tmp/static_lib /tmp/static_build
    if CUDA_VISIBLE_DEVICES="" LDFLAGS="-static-libstdc++ -static-libgcc" MAX_JOBS=16 \
      timeout "$(cap 150)" "$PY" setup.py -q build_ext --build-temp /tmp/static_build \
      --build-lib /tmp/static_lib >"$LOGS/build_static.log" 2>&1; then
      mkdir -p /tmp/static_pkg && cp -r fastcore_ext /tmp/static_pkg/ \
        && cp /tmp/static_lib/fastcore_ext/_C*.so /tmp/static_pkg/fastcore_ext/
      note "static build          $((SECONDS - t0)) s  ldd: $(ldd /tmp/static_pkg/fastcore_ext/_C*.so | grep -cE 'stdc|gcc_s') C++ runtime libs"
      throw_check static /tmp/static_pkg
    else
      note "static build          FAILED (build_static.log)"
    fi
  fi
fi

# 5. The CUDA augment kernel's variants (bench/dev/augment_normalize.cu): each validated bit
#     for bit against the production kernel, then timed.
if have "augment variants" 40; then
  t0=$SECONDS
  TORCH_INC=$("$PY" -c "from torch.utils import cpp_extension as c
print(' '.join('-I' + d for d in c.include_paths()))" 2>/dev/null)
  if /usr/local/cuda/bin/nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90 -Icsrc \
    $TORCH_INC bench/dev/augment_normalize.cu -o /tmp/augment_dev >"$LOGS/dev.log" 2>&1; then
    timeout "$(cap 60)" /tmp/augment_dev >>"$LOGS/dev.log" 2>&1
    note "augment variants      rc=$?  $((SECONDS - t0)) s"
    grep -E "^(variant|pixel|row4)" "$LOGS/dev.log" | sed 's/^/                      /' \
      | tee -a "$SUMMARY"
  else
    note "augment variants      BUILD FAILED (dev.log)"
  fi
fi

# 6. JPEG decoding on the GPU (issue 16.5): nvJPEG against the CPU decoder, the bunch
#     choosing it, broken files; then images/s, CPU vs CUDA (bench/bench_decode.py).
if have "cuda decode" 60; then
  t0=$SECONDS
  timeout "$(cap 90)" "$PY" -m pytest -q -p no:cacheprovider -rfEs --tb=short \
    tests/test_data_device_decode.py >"$LOGS/tests_decode.log" 2>&1
  note "cuda decode tests     rc=$?  $(tail -1 "$LOGS/tests_decode.log")  $((SECONDS - t0)) s"
  failures "$LOGS/tests_decode.log" 10
  grep -m1 "^SKIPPED" "$LOGS/tests_decode.log" | cut -c1-200 | tee -a "$SUMMARY"
  timeout "$(cap 60)" "$PY" bench/bench_decode.py >"$LOGS/bench_decode.log" 2>&1
  note "decode bench          rc=$?  $((SECONDS - t0)) s"
fi

# 7. Kernel benchmarks (each bench file prints its own table).
if have "kernel benchmarks" 60; then
  t0=$SECONDS
  timeout "$(cap 120)" "$PY" -m pytest -q -s -p no:cacheprovider bench/bench_augment.py \
    bench/bench_optim.py --benchmark-columns=median,iqr,rounds \
    --benchmark-json="$LOGS/bench.json" >"$LOGS/bench.log" 2>&1
  note "kernel benchmarks     rc=$?  $((SECONDS - t0)) s"
fi

# 8. learn.compile() on CUDA (bench/bench_compile.py): resnet18 64 px bs 64 in bf16 +
#     channels-last (the automatic choice there), eager against torch.compile's default mode
#     and "reduce-overhead" (CUDA graphs), each compiled cold; compile stays opt-in until this
#     says it is faster.
if have "compile bench" 150; then
  t0=$SECONDS
  PYTHONPATH="$PWD" timeout "$(cap 200)" "$PY" bench/bench_compile.py --device cuda \
    --precisions bf16 --modes default,reduce-overhead --rounds 3 >"$LOGS/bench_compile.log" 2>&1
  note "compile bench         rc=$?  $((SECONDS - t0)) s"
fi

# 9. Every other test that has a CUDA variant (tests/test_compile.py's reduce-overhead fit too).
if have "other cuda tests" 40; then
  t0=$SECONDS
  timeout "$(cap 90)" "$PY" -m pytest -q -p no:cacheprovider $XDIST -rfE --tb=short tests \
    -k cuda --ignore tests/test_augment_normalize.py --ignore tests/test_optim.py \
    --ignore tests/test_schedule.py --ignore tests/test_augment.py >"$LOGS/tests_rest.log" 2>&1
  note "other cuda tests      rc=$?  $(tail -1 "$LOGS/tests_rest.log")  $((SECONDS - t0)) s"
  failures "$LOGS/tests_rest.log" 20
fi

# 10. CUDA kernel tests under compute-sanitizer (memcheck), the caching allocator off so that
#    out-of-bounds accesses land outside any allocation.
if command -v compute-sanitizer >/dev/null && have "compute-sanitizer" 40; then
  t0=$SECONDS
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(cap 80)" compute-sanitizer --tool memcheck \
    --error-exitcode 99 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_augment_normalize.py tests/test_optim.py \
    -k "cuda and not over_2_31 and (perspective or non_contiguous or tiny_images or empty \
or thousands or zero_size)" >"$LOGS/sanitizer.log" 2>&1
  note "compute-sanitizer     rc=$?  $(grep -E 'ERROR SUMMARY' "$LOGS/sanitizer.log" | tail -1) \
$(tail -1 "$LOGS/sanitizer.log" | cut -c1-80)  $((SECONDS - t0)) s"
fi

# 11. Index overflow: tensors of more than 2^31 elements (9-17 GB of GPU memory).
if have "> 2^31 elements" 20; then
  t0=$SECONDS
  timeout "$(cap 60)" "$PY" -m pytest -q -p no:cacheprovider tests/test_augment_normalize.py \
    tests/test_optim.py -k over_2_31 >"$LOGS/tests_large.log" 2>&1
  note "> 2^31 elements       rc=$?  $(tail -1 "$LOGS/tests_large.log")  $((SECONDS - t0)) s"
fi

echo
echo "================ device check summary ($SECONDS s) ================"
cat "$SUMMARY"
echo "---------------- decode throughput (bench_decode.log in logs.tgz) ----------------"
tail -8 "$LOGS/bench_decode.log" 2>/dev/null
echo "---------------- kernel benchmarks (bench.log in logs.tgz) ----------------"
awk '/^augment_normalize on |^Optimizer step incl/ {show=1} /^(PASSED|FAILED|=|-{10})/ {show=0} show' \
  "$LOGS/bench.log" 2>/dev/null | head -60
echo "---------------- learn.compile (bench_compile.log in logs.tgz) ----------------"
grep -E "^\||^resnet18|Error" "$LOGS/bench_compile.log" 2>/dev/null | tail -8
echo "---------------- training (bench_train.log in logs.tgz) ----------------"
grep -vE "^\s*$|^(PASSED|SKIPPED)|warnings summary|Warning|warn\(" "$LOGS/bench_train.log" \
  2>/dev/null | tail -30
