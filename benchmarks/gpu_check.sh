#!/usr/bin/env bash
# The GPU check, in one call (sized for about 7 minutes on one H100 / H200):
#   1. install the package as the device image allows (no registry there: --no-deps), building
#      the native extension for sm_90 (MPDIT_NATIVE_BUILD=cuda: fails rather than skip CUDA);
#   2. the kernel tests natively on the GPU: the ops on the triton and native backends (native:
#      C++ on CPU tensors and CUDA on GPU tensors), whole models on both fused backends;
#   3. each fused op at D = 768 and 1152 (batch 256, bf16): eager, native, Triton, with
#      GB/s and % of a device copy timed in the same run (`mpdit bench --sections kernels`);
#   4. one MPDiT-XL bf16 training step at batch 256 per backend: torch, triton, native
#      (`mpdit bench --sections flops,train`). The compile providers are left out: compiling
#      costs minutes of a 15-minute device budget;
#   5. last, the C++ unit tests through CMake + ctest with the CUDA kernels (when the image has cmake).
# Writes at most 8 files into $OUT (or benchmarks/results/gpu-<date>/) and prints the tables last.
# Reads the GPU's settings through nvidia-smi / NVML; never changes them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-$(date +%F)}
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: > "$LOG"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,memory.total --format=csv | tee -a "$LOG"
start=$(date +%s)
# the pip on PATH may belong to another Python than the one with torch: install into `python`'s
PIP=(python -m pip)
python -m pip --version > /dev/null 2>&1 || PIP=(pip --python "$(command -v python)")
# The image's system compilers, which link libstdc++ dynamically (results/2026-11-26-gpu-h200/README.md).
export CC=gcc CXX=g++
MPDIT_NATIVE_BUILD=cuda TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 \
  "${PIP[@]}" install -v --no-deps --no-build-isolation -e . > /tmp/mpdit-install.log 2>&1 \
  || { echo "install failed:"; tail -30 /tmp/mpdit-install.log | tee -a "$LOG"; exit 1; }
echo "== native build (CPU + CUDA sources, MAX_JOBS=16): $(( $(date +%s) - start )) s ==" | tee -a "$LOG"
grep "mpdit setup.py" /tmp/mpdit-install.log | tee -a "$LOG"
ldd mpdit_kernels/_native*.so | grep libstdc | tee -a "$LOG"
python -c "import mpdit_kernels._native as N; print('mpdit_kernels._native with_cuda =', N.with_cuda)" | tee -a "$LOG"

echo "== kernel tests (native GPU) ==" | tee -a "$LOG"
timeout 170 python -m pytest -q -p no:cacheprovider tests/kernels/test_adaln.py tests/kernels/test_upsample.py \
  tests/kernels/test_fine_entry.py tests/kernels/test_fno.py tests/kernels/test_backends.py \
  tests/kernels/test_native_extension.py tests/kernels/test_attention.py tests/diffusion/test_samplers.py >> "$LOG" 2>&1
tests_rc=$?
tail -3 "$LOG"

# Two bench runs, so that a failure in the second cannot lose the first's figures.
echo "== fused ops: mpdit bench --preset paper --sections kernels --providers torch,native,triton ==" | tee -a "$LOG"
timeout 120 python -m mpdit bench --preset paper --models MPDiT-XL --sections kernels --providers torch,native,triton \
  --out "$OUT/kernels" --no-progress --no-plots > "$OUT/kernels.md" 2>&1
kernels_rc=$?
echo "== training step: mpdit bench --preset paper --models MPDiT-XL --sections flops,train --providers torch,triton,native ==" \
  | tee -a "$LOG"
timeout 150 python -m mpdit bench --preset paper --models MPDiT-XL --sections flops,train --providers torch,triton,native \
  --out "$OUT/train" --no-progress --no-plots > "$OUT/train.md" 2>&1
train_rc=$?

echo "== C++ unit tests: CMake + ctest, CUDA on ==" | tee -a "$LOG"
ctest_rc=0
if command -v cmake > /dev/null; then
  start=$(date +%s)
  timeout 100 bash -c 'cmake -S . -B /tmp/mpdit-cmake -DMPDIT_WITH_CUDA=ON \
      -DCMAKE_PREFIX_PATH="$(python -c "import torch; print(torch.utils.cmake_prefix_path)")" > /tmp/cmake.log 2>&1 \
    && cmake --build /tmp/mpdit-cmake -j 16 >> /tmp/cmake.log 2>&1 \
    && ctest --test-dir /tmp/mpdit-cmake --output-on-failure' >> "$LOG" 2>&1
  ctest_rc=$?
  [ $ctest_rc -ne 0 ] && tail -20 /tmp/cmake.log >> "$LOG"
  echo "ctest rc=$ctest_rc in $(( $(date +%s) - start )) s" | tee -a "$LOG"
else
  echo "no cmake in this image: ctest not run" | tee -a "$LOG"
fi

echo
echo "== summary: kernel tests rc=$tests_rc, ctest rc=$ctest_rc, fused ops rc=$kernels_rc, training step rc=$train_rc =="
grep -E "passed|failed" "$LOG" | tail -2
cat "$OUT/kernels.md" "$OUT/train.md"
exit $(( tests_rc || ctest_rc || kernels_rc || train_rc ))
