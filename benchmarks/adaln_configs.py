"""Each tuning config of the adaLN kernels, timed at MPDiT-XL's shapes, in one process (GPU).

    python benchmarks/adaln_configs.py [--batch 256] [--widths 1152,768]

Config 0 of each list is the launch the kernels had before they were tiled (16 rows per
program, one at a time, 8 warps), so its column is the "before" of the tiling and the best
column the "after"; the autotuner picks per (tokens, width). % of copy is against a
device-to-device copy timed in the same process. On a GPU each call is a CUDA-graph replay
(the 2026-11-27 table in benchmarks/results/ was timed from the host: its coarse-shape
columns measure the launch cost).
"""
import argparse

import torch

from mpdit.bench import kernel_cases
from mpdit.bench.timing import copy_bandwidth_gbs, time_call
from mpdit_kernels.triton import adaln, runtime

CASES = ("residual_adaln_modulate/coarse", "residual_adaln_modulate/fine", "adaln_modulate/fine")


def time_config(index, case, batch, width, dtype, device) -> dict:
    """{mode: (ms, bytes)} of one case with every adaLN kernel pinned to config `index`."""
    runtime.forced_config = index
    for kernel in (adaln._adaln_fwd_kernel, adaln._adaln_bwd_kernel):
        kernel.cache.clear()
    forward, inputs, bytes_fwd, bytes_bwd = kernel_cases.CASES[case](batch, width, dtype, device, "triton")
    outputs = forward()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    grads = [torch.randn_like(o) for o in outputs]
    backward = lambda: torch.autograd.grad(outputs, inputs, grads, retain_graph=True)
    graph = device == "cuda"  # device time: the host's launch cost exceeds the coarse shape's kernels
    return {"forward": (time_call(forward, device, graph=graph)["median_ms"], bytes_fwd),
            "backward": (time_call(backward, device, graph=graph)["median_ms"], bytes_bwd)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--widths", default="1152,768")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    copy_gbs = copy_bandwidth_gbs(args.device, (1 << 30) if args.device == "cuda" else (1 << 24))
    configs = len(adaln.FORWARD_CONFIGS)
    print(f"device copy {copy_gbs:.0f} GB/s; forward configs (ROWS, TILE, warps): "
          + ", ".join(f"{i}: {c.kwargs['ROWS']}/{c.kwargs['TILE']}/{c.num_warps}"
                      for i, c in enumerate(adaln.FORWARD_CONFIGS))
          + "; backward (TILE, warps): "
          + ", ".join(f"{i}: {c.kwargs['TILE']}/{c.num_warps}" for i, c in enumerate(adaln.BACKWARD_CONFIGS)))
    print("\n| op | D | mode | " + " | ".join(f"config {i} ms (% copy)" for i in range(configs))
          + " | best / config 0 |\n|" + "---|" * (configs + 4))
    for width in (int(w) for w in args.widths.split(",")):
        for case in CASES:
            timings = [time_config(i, case, args.batch, width, dtype, args.device) for i in range(configs)]
            for mode in ("forward", "backward"):
                cells = []
                for timing in timings:
                    ms, moved = timing[mode]
                    cells.append(f"{ms:.3f} ({100 * moved / (ms * 1e-3) / 1e9 / copy_gbs:.0f}%)")
                times = [timing[mode][0] for timing in timings]
                print(f"| {case} | {width} | {mode} | " + " | ".join(cells) + f" | {times[0] / min(times):.2f}x |")
    runtime.forced_config = None


if __name__ == "__main__":
    main()
