#!/usr/bin/env bash
# The GPU check, in one call (sized for under 8 minutes on one H100):
#   1. install the package as the device image allows (no registry there: --no-deps);
#   2. the kernel tests, natively on the GPU;
#   3. each fused op against eager and torch.compile at D = 768 and 1152 (batch 256, bf16),
#      with GB/s and % of a device copy timed in the same run (`mpdit bench --sections kernels`);
#   4. one MPDiT-XL bf16 training step at batch 256 per backend: torch, torch.compile, triton,
#      triton + compile (`mpdit bench --sections flops,train`).
# Writes into $OUT (or benchmarks/results/gpu-<date>/) and prints the tables last.
# Reads the GPU's settings through nvidia-smi / NVML; never changes them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-$(date +%F)}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,memory.total --format=csv
pip install --no-deps --no-build-isolation -e . > /tmp/mpdit-install.log 2>&1 \
  || { echo "install failed:"; tail -20 /tmp/mpdit-install.log; exit 1; }

echo "== kernel tests (native) =="
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_kernel_adaln.py tests/test_kernel_upsample.py \
  tests/test_kernel_fno.py tests/test_attention.py tests/test_kernel_backend.py > "$OUT/kernel-tests.log" 2>&1
tests_rc=$?
tail -3 "$OUT/kernel-tests.log"

# Two runs, so that a slow compile in the second cannot lose the first's figures.
echo "== fused ops: mpdit bench --preset paper --sections kernels =="
timeout 150 python -m mpdit bench --preset paper --models MPDiT-XL --sections kernels --out "$OUT/kernels" \
  --no-progress --no-plots > "$OUT/kernels.md" 2>&1
kernels_rc=$?
echo "== training step: mpdit bench --preset paper --models MPDiT-XL --sections flops,train =="
timeout 240 python -m mpdit bench --preset paper --models MPDiT-XL --sections flops,train --out "$OUT/train" \
  --no-progress --no-plots > "$OUT/train.md" 2>&1
train_rc=$?

echo
echo "== summary: kernel tests rc=$tests_rc, fused ops rc=$kernels_rc, training step rc=$train_rc =="
grep -E "passed|failed" "$OUT/kernel-tests.log" | tail -1
cat "$OUT/kernels.md" "$OUT/train.md"
exit $(( tests_rc || kernels_rc || train_rc ))
