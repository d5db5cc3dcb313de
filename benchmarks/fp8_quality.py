"""FP8 quality gate: the trainer's own step, the same seed and data, once per precision.

Each run is `mpdit train`'s step (flow-matching loss, clipping, fused AdamW, EMA) on scikit-learn's
digits at 32 x 32 pixels (no download; the XL models see as many tokens as on 256-pixel ImageNet
latents), with nothing written but the losses. The gate: the mean loss of the last `--window`
steps under fp8 within `--tolerance` (2%) of bf16's. Streams one JSON line per step to
<out>/<precision>.jsonl; writes <out>/fp8_quality.{json,md,png} at the end.

    python benchmarks/fp8_quality.py --out DIR                                  # GPU: MPDiT-XL, 500 steps
    python benchmarks/fp8_quality.py --model MPDiT-S --steps 20 --batch 8 --window 5 \\
        --precisions fp32,bf16 --device cpu --out DIR                           # the script on a CPU
    python benchmarks/fp8_quality.py --model MPDiT-S --image-size 8 --batch 32 \\
        --kernel-backend torch --device cpu --float8-on-cpu --out DIR           # float8's numerics on a CPU

The model options are `mpdit train`'s (--stages, --class-tokens, ...). On a CPU a smaller model
keeps it short: torch's float8 matrix product there is a plain loop, about a second per block
product at MPDiT-S's width (--stages 4:1,2:1: two blocks; --class-tokens 0: fewer rows).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from mpdit.bench.results import git_sha
from mpdit.cli.parsing import add_model_arguments, overrides_from_args
from mpdit.models import float8
from mpdit.training.config import PRECISIONS, TrainConfig
from mpdit.training.trainer import prepare
from mpdit.world import World


def run_losses(args, precision: str, out: str) -> list:
    """The per-step losses of one run, streamed to <out>/<precision>.jsonl as they come."""
    config = TrainConfig(model=args.model, dataset="digits", image_size=args.image_size, steps=args.steps,
                         global_batch_size=args.batch, run_dir=out, precision=precision, seed=args.seed,
                         kernel_backend=args.kernel_backend, compile=args.compile, num_workers=0, lr=args.lr,
                         overrides=overrides_from_args(args))
    run, batches = prepare(config, World(device=torch.device(args.device)))
    losses, start = [], time.perf_counter()
    with open(os.path.join(out, f"{precision}.jsonl"), "w") as stream:
        for step in range(1, args.steps + 1):
            loss, grad_norm, _ = run.train_step([next(batches)], step - 1)
            losses.append(loss)
            stream.write(json.dumps({"step": step, "loss": loss, "grad_norm": grad_norm,
                                     "seconds": time.perf_counter() - start}) + "\n")
            stream.flush()
    return losses


def verdict(curves: dict, window: int, tolerance: float) -> dict:
    """Mean of each curve's last `window` losses; the later precisions against the first."""
    (reference, base), *others = curves.items()
    means = {name: statistics.fmean(losses[-window:]) for name, losses in curves.items()}
    gaps = {name: (means[name] - means[reference]) / means[reference] for name, _ in others}
    return {"reference": reference, "window": window, "tolerance": tolerance, "means": means,
            "relative_gaps": gaps, "passed": all(abs(gap) <= tolerance for gap in gaps.values())}


def running_mean(values: list, width: int) -> list:
    return [statistics.fmean(values[max(0, i + 1 - width):i + 1]) for i in range(len(values))]


def plot(curves: dict, result: dict, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, losses in curves.items():
        steps = range(1, len(losses) + 1)
        line, = ax.plot(steps, running_mean(losses, 20), label=f"{name} (last {result['window']}: "
                                                                  f"{result['means'][name]:.4f})")
        ax.plot(steps, losses, color=line.get_color(), alpha=0.25, linewidth=0.7)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("flow-matching loss (faint: per step; line: mean of 20)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)  # --model and the model options, as in mpdit train
    parser.set_defaults(model="MPDiT-XL")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--image-size", type=int, default=32, choices=(8, 16, 32))
    parser.add_argument("--precisions", default="bf16,fp8", help="the first is the reference")
    parser.add_argument("--window", type=int, default=100, help="the last steps whose mean loss is compared")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--kernel-backend", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--float8-on-cpu", action="store_true",
                        help="run fp8 on a CPU through torch's CPU _scaled_mm (same rounding; slow): numerics only")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    float8.ALLOW_CPU = args.float8_on_cpu
    precisions = args.precisions.split(",")
    if len(set(precisions)) != len(precisions) or len(precisions) < 2 or not set(precisions) <= set(PRECISIONS):
        parser.error(f"--precisions={args.precisions}: expected two or more different ones of {', '.join(PRECISIONS)}")
    if not 0 < args.window <= args.steps:
        parser.error(f"--window={args.window}: expected 1 to --steps ({args.steps})")
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as `mpdit train`
    curves = {}
    for precision in precisions:
        curves[precision] = run_losses(args, precision, args.out)
        mean = statistics.fmean(curves[precision][-args.window:])
        print(f"{precision}: last {args.window} steps' mean loss {mean:.5f}", flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    result = verdict(curves, args.window, args.tolerance)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    shown = lambda name, value: ",".join(f"{p}:{d}" for p, d in value) if name == "stages" else str(value)
    given = "".join(f" {name.replace('_', '-')} {shown(name, value)}"  # the model options, as given
                    for name, value in overrides_from_args(args).items())
    title = (f"{args.model}{given}, digits {args.image_size}px, batch {args.batch}, {args.steps} steps, "
             f"seed {args.seed}, {where}, git {git_sha()}")
    result.update(title=title, settings=vars(args))
    with open(os.path.join(args.out, "fp8_quality.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"# Loss gate: {title}", "",
             f"| precision | mean loss, last {args.window} steps | vs {result['reference']} |", "|---|---|---|"]
    for name, mean in result["means"].items():
        gap = result["relative_gaps"].get(name)
        lines.append(f"| {name} | {mean:.5f} | {'-' if gap is None else f'{100 * gap:+.2f}%'} |")
    lines += ["", f"gate (within {100 * args.tolerance:.0f}%): {'passed' if result['passed'] else 'FAILED'}"]
    with open(os.path.join(args.out, "fp8_quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(curves, result, title, os.path.join(args.out, "fp8_quality.png"))
    print("\n".join(lines))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
