"""One full training step (forward, backward, AdamW) per kernel backend, in one process.

    python benchmarks/train_step.py                            # CUDA: MPDiT-XL, batch 64, bf16 autocast
    TRITON_INTERPRET=1 python benchmarks/train_step.py --device cpu --model MPDiT-S --batch 2 --steps 2

Providers: torch (eager), compile (torch.compile of the plain model), triton (fused
kernels, eager), triton+compile. The figure to quote is each provider's images/s over
eager's and over compile's, measured here in the same run.
"""
import argparse
import contextlib
import gc
import os
import statistics
import time

import torch

from mpdit import create_model
from mpdit.bench.timing import Results
from mpdit.flops import audit
from mpdit.flow import flow_matching_loss

PROVIDERS = ("torch", "compile", "triton", "triton+compile")


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(provider: str, args):
    backend = "triton" if provider.startswith("triton") else "torch"
    model = create_model(args.model, kernel_backend=backend).to(args.device)
    model.check_values = False  # the inputs below are valid; no device sync inside the step
    fused = {"fused": True} if args.device == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, **fused)
    forward = torch.compile(model) if provider.endswith("compile") else model
    return model, forward, optimizer


def run_provider(provider: str, args) -> dict:
    model, forward, optimizer = build(provider, args)
    cfg = model.config
    latents = torch.randn(args.batch, cfg.in_channels, cfg.latent_size, cfg.latent_size, device=args.device)
    labels = torch.randint(0, cfg.num_classes, (args.batch,), device=args.device)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    def step():
        with autocast:
            loss = flow_matching_loss(forward, latents, labels, null_class=cfg.num_classes)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(args.warmup):  # includes compilation
        step()
    synchronize(args.device)
    warmup_s = time.perf_counter() - start
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        synchronize(args.device)
        times.append(time.perf_counter() - start)
    result = {"median_s": statistics.median(times), "p20_s": min(times), "p80_s": max(times), "warmup_s": warmup_s}
    if len(times) >= 5:
        quantiles = statistics.quantiles(times, n=5)
        result.update(p20_s=quantiles[0], p80_s=quantiles[-1])
    if args.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    del model, forward, optimizer
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="MPDiT-XL")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--fp32", dest="bf16", action="store_false", help="no bf16 autocast")
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    results = Results(args.device)
    macs = audit(args.model).gflops_exact * 1e9  # per image, one forward
    x_label = f"{args.model} B={args.batch} {'bf16 autocast' if args.bf16 else 'fp32'}"
    medians = {}
    for provider in args.providers.split(","):
        print(f"timing {provider} ...", flush=True)
        r = run_provider(provider, args)
        medians[provider] = r["median_s"]
        images_per_s = args.batch / r["median_s"]
        tflops = 3 * 2 * macs * args.batch / r["median_s"] / 1e12  # forward + backward = 3x the forward's FLOPs
        for metric, unit, value in (("median", "s", r["median_s"]), ("p20", "s", r["p20_s"]), ("p80", "s", r["p80_s"]),
                                    ("warmup_and_compile", "s", r["warmup_s"]), ("throughput", "images/s", images_per_s),
                                    ("achieved", "TFLOP/s", tflops)):
            results.add("train_step", provider, "train", metric, unit, x_label, value)
        if "peak_memory_gib" in r:
            results.add("train_step", provider, "train", "peak_memory", "GiB", x_label, r["peak_memory_gib"])
    path = results.write(args.out, "train_step", {"model": args.model, "batch": args.batch})

    print(f"\nwrote {path}\n{x_label}\n")
    print("| provider | step ms | images/s | vs torch | vs compile |")
    print("|---|---|---|---|---|")
    for provider, seconds in medians.items():
        vs_torch = f"{medians['torch'] / seconds:.2f}x" if "torch" in medians else "-"
        vs_compile = f"{medians['compile'] / seconds:.2f}x" if "compile" in medians else "-"
        print(f"| {provider} | {seconds * 1e3:.1f} | {args.batch / seconds:.1f} | {vs_torch} | {vs_compile} |")


if __name__ == "__main__":
    main()
