#!/usr/bin/env bash
# The GPU check, in one call (sized for under 8 minutes on one H100):
#   1. install the package as the device image allows (no registry there);
#   2. the kernel tests, natively on the GPU;
#   3. each fused op against eager PyTorch and torch.compile at MPDiT-XL shapes (B 256, bf16);
#   4. one MPDiT-XL bf16 training step per kernel backend.
# Writes logs and JSON into $OUT (or benchmarks/results/gpu-<date>/) and prints the tables last.
# Reads the GPU's settings; never changes them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-$(date +%F)}
export OUT PYTHONUNBUFFERED=1
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,memory.total --format=csv \
  | tee "$OUT/nvidia-smi.csv"
pip install --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 \
  || { echo "install failed:"; tail -20 "$OUT/install.log"; exit 1; }

echo "== kernel tests (native) =="
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_kernel_adaln.py tests/test_kernel_upsample.py \
  tests/test_kernel_fno.py tests/test_attention.py tests/test_kernel_backend.py > "$OUT/kernel-tests.log" 2>&1
tests_rc=$?
tail -5 "$OUT/kernel-tests.log"

echo "== fused ops =="
timeout 150 python benchmarks/kernels.py --out "$OUT" > "$OUT/kernels.log" 2>&1
kernels_rc=$?
echo "== training step =="
timeout 240 python benchmarks/train_step.py --out "$OUT" > "$OUT/train_step.log" 2>&1
train_rc=$?

echo
echo "== summary: tests rc=$tests_rc, kernels rc=$kernels_rc, train_step rc=$train_rc =="
grep -E "passed|failed" "$OUT/kernel-tests.log" | tail -1
sed -n '/^copy bandwidth/,$p' "$OUT/kernels.log"
[ $kernels_rc -eq 0 ] || tail -15 "$OUT/kernels.log"
sed -n '/^MPDiT/,$p' "$OUT/train_step.log"
[ $train_rc -eq 0 ] || tail -15 "$OUT/train_step.log"
exit $(( tests_rc || kernels_rc || train_rc ))
