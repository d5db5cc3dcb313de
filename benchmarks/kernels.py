"""Fused ops against eager PyTorch and torch.compile at MPDiT-XL shapes: time, GB/s, % of copy.

    python benchmarks/kernels.py                      # CUDA: batch 256, D 1152, bf16
    TRITON_INTERPRET=1 python benchmarks/kernels.py --device cpu --batch 2 --width 72 --dtype float32

Bytes are the fewest each op must move (each input read once, each output written once);
GB/s = bytes / median time; % of copy is against a device-to-device copy timed in the same run.
Writes kernels.json (long-format rows) into --out (default $OUT, else benchmarks/results/).
"""
import argparse
import os

import torch
import torch._functorch.config

from mpdit.benchmarking import Results, copy_bandwidth_gbs, time_call
from mpdit_kernels import adaln, fno, upsample

PROVIDERS = ("torch", "compile", "triton")


def pick(provider, kernel, reference):
    if provider == "triton":
        return kernel
    if provider == "compile":
        return torch.compile(reference)
    return reference


def leaf(shape, dtype, device, scale=1.0):
    return (scale * torch.randn(shape, device=device, dtype=torch.float32)).to(dtype).requires_grad_()


# One setup_<case>(B, D, dtype, device, provider) per case: returns (forward fn, inputs, bytes fwd, bytes bwd).
def setup_residual_adaln(B, D, dtype, device, provider, tokens):
    x, y = leaf((B, tokens, D), dtype, device), leaf((B, tokens, D), dtype, device)
    gate, shift, scale = (leaf((B, D), dtype, device, 0.5) for _ in range(3))
    fn = pick(provider, adaln.residual_adaln_modulate, adaln.residual_adaln_modulate_ref)
    size = B * tokens * D * x.element_size()
    return (lambda: fn(x, y, gate, shift, scale)), [x, y, gate, shift, scale], 4 * size, 6 * size


def setup_adaln(B, D, dtype, device, provider, tokens):
    x = leaf((B, tokens, D), dtype, device)
    shift, scale = (leaf((B, D), dtype, device, 0.5) for _ in range(2))
    fn = pick(provider, adaln.adaln_modulate, adaln.adaln_modulate_ref)
    size = B * tokens * D * x.element_size()
    return (lambda: fn(x, shift, scale)), [x, shift, scale], 2 * size, 3 * size


def setup_upsample(B, D, dtype, device, provider, grid=8, class_tokens=16):
    wide = leaf((B, grid * grid, 4 * D), dtype, device)
    cls = leaf((B, class_tokens, D), dtype, device)
    fn = pick(provider, upsample.upsample_shuffle_norm, upsample.upsample_shuffle_norm_ref)
    element = wide.element_size()
    read = (wide.numel() + cls.numel()) * element
    written = B * (class_tokens + 4 * grid * grid) * D * element
    return (lambda: fn(wide, cls, 2, grid, grid)), [wide, cls], read + written, 2 * read + written


def setup_fine_entry(B, D, dtype, device, provider, image_tokens=256, class_tokens=16):
    refined = leaf((B, class_tokens + image_tokens, D), dtype, device)
    skip = leaf((B, image_tokens, D), dtype, device)
    pos = torch.randn(image_tokens, D, device=device, dtype=dtype)
    fn = pick(provider, upsample.fine_entry, upsample.fine_entry_ref)
    element = refined.element_size()
    moved = (2 * refined.numel() + skip.numel()) * element
    return (lambda: fn(refined, skip, pos)), [refined, skip], moved, None  # backward only routes views


def setup_fno(B, D, dtype, device, provider):
    layers, width, modes, points = 3, 32, 16, 32
    t = torch.rand(B, device=device)
    grid = torch.linspace(-1, 1, points, device=device)
    params = [leaf((width, 1), torch.float32, device), leaf((width,), torch.float32, device),
              leaf((layers, width, width, modes, 2), torch.float32, device, 0.05),
              leaf((layers, width, width), torch.float32, device, 0.2), leaf((layers, width), torch.float32, device)]
    fn = pick(provider, fno.fno_time_features, fno.fno_time_features_ref)
    return (lambda: fn(t, grid, *params)), params, None, None  # launch-bound: time only


CASES = {
    "residual_adaln_modulate/coarse": lambda *a: setup_residual_adaln(*a, tokens=80),
    "residual_adaln_modulate/fine": lambda *a: setup_residual_adaln(*a, tokens=272),
    "adaln_modulate/fine": lambda *a: setup_adaln(*a, tokens=272),
    "upsample_shuffle_norm": setup_upsample,
    "fine_entry": setup_fine_entry,
    "fno_time_features": setup_fno,
}


def bench_case(results, name, setup, args, copy_gbs, x_label):
    for provider in PROVIDERS:
        forward, inputs, bytes_fwd, bytes_bwd = setup(args.batch, args.width, args.dtype, args.device, provider)
        outputs = forward()
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        grads = [torch.randn_like(o) for o in outputs]

        def backward():
            torch.autograd.grad(outputs, inputs, grads, retain_graph=True)

        for mode, fn, moved in (("forward", forward, bytes_fwd), ("backward", backward, bytes_bwd)):
            timing = time_call(fn, args.device)
            for metric, value in timing.items():
                results.add(name, provider, mode, metric, "ms", x_label, value)
            if moved:
                gbs = moved / (timing["median_ms"] * 1e-3) / 1e9
                results.add(name, provider, mode, "bandwidth", "GB/s", x_label, gbs)
                results.add(name, provider, mode, "copy_fraction", "%", x_label, 100 * gbs / copy_gbs)


def summary(results) -> str:
    by_key = {(r["case"], r["provider"], r["mode"], r["metric"]): r["value"] for r in results.rows}
    lines = ["| op | mode | torch ms | compile ms | triton ms | triton GB/s | % of copy | vs torch | vs compile |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case in CASES:
        for mode in ("forward", "backward"):
            ms = [by_key.get((case, p, mode, "median_ms")) for p in PROVIDERS]
            gbs = by_key.get((case, "triton", mode, "bandwidth"))
            pct = by_key.get((case, "triton", mode, "copy_fraction"))
            lines.append(f"| {case} | {mode} | " + " | ".join(f"{v:.3f}" for v in ms) + " | "
                         + (f"{gbs:.0f} | {pct:.0f}%" if gbs else "- | -")
                         + f" | {ms[0] / ms[2]:.2f}x | {ms[1] / ms[2]:.2f}x |")
    return "\n".join(lines)


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
    args.dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    results = Results(args.device)
    copy_gbs = copy_bandwidth_gbs(args.device, size_bytes=(1 << 30) if args.device == "cuda" else (1 << 26))
    results.add("copy", "torch", "forward", "bandwidth", "GB/s", "1 GiB" if args.device == "cuda" else "64 MiB",
                copy_gbs)
    x_label = f"B={args.batch} D={args.width} {str(args.dtype).replace('torch.', '')}"
    for name, setup in CASES.items():
        print(f"timing {name} ...", flush=True)
        bench_case(results, name, setup, args, copy_gbs, x_label)
    path = results.write(args.out, "kernels", {"copy_gbs": copy_gbs, "shape": x_label})
    print(f"\nwrote {path}\ncopy bandwidth {copy_gbs:.0f} GB/s; {x_label}\n")
    print(summary(results))


if __name__ == "__main__":
    main()
