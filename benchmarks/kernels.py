"""Fused ops against eager PyTorch and torch.compile at MPDiT-XL shapes: time, GB/s, % of copy.

    python benchmarks/kernels.py                      # CUDA: batch 256, D 1152, bf16
    TRITON_INTERPRET=1 python benchmarks/kernels.py --device cpu --batch 2 --width 72 --dtype float32

Writes kernels.json and kernels.csv (long-format rows) into --out (default $OUT, else
benchmarks/results/). `mpdit bench` runs the same cases over more widths.
"""
import argparse
import os

import torch
import torch._functorch.config

from mpdit.bench.kernel_cases import CASES, PROVIDERS, bench_kernels, summary
from mpdit.bench.timing import Results, copy_bandwidth_gbs


def main() -> None:
    # Backward is timed alone by replaying it on a retained graph; compiled graphs refuse a
    # retained graph while they donate buffers (a memory saving, not a speed one).
    torch._functorch.config.donated_buffer = False
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    results = Results(args.device)
    copy_gbs = copy_bandwidth_gbs(args.device, size_bytes=(1 << 30) if args.device == "cuda" else (1 << 26))
    results.add("copy", "torch", "forward", "bandwidth", "GB/s", "device copy", copy_gbs)
    bench_kernels(results, [args.width], args.batch, dtype, args.device, PROVIDERS, copy_gbs)
    path = results.write(args.out, "kernels", {"copy_gbs": copy_gbs, "cases": list(CASES)})
    print(f"\nwrote {path}\ncopy bandwidth {copy_gbs:.0f} GB/s\n")
    print(summary(results))


if __name__ == "__main__":
    main()
