"""Forward latency of two models in one process, interleaved, against their exact MAC ratio.

    python benchmarks/cpu_forward.py                       # MPDiT-B vs DiT-B/2, batch 4
    python benchmarks/cpu_forward.py --models MPDiT-XL DiT-XL/2 --batch 1 --repeats 5

Runs alternate between the models so that drift in the machine (clocks, other load)
falls on both alike; the figure to quote is the ratio of the medians.
"""
import argparse
import json
import platform
import statistics
import time

import torch

from mpdit import create_model
from mpdit.audit.flops import audit


def time_forward(model, inputs) -> float:
    start = time.perf_counter()
    model(*inputs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs=2, default=["MPDiT-B", "DiT-B/2"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    models, inputs = [], []
    for name in args.models:
        model = create_model(name).eval()
        model.check_values = False  # inputs below are valid; keep syncs out of the timing
        cfg = model.config
        x = torch.randn(args.batch, cfg.in_channels, cfg.latent_size, cfg.latent_size)
        models.append(model)
        inputs.append((x, torch.rand(args.batch), torch.randint(0, cfg.num_classes, (args.batch,))))

    times = [[] for _ in models]
    with torch.inference_mode():
        for step in range(args.warmup + args.repeats):
            for i, model in enumerate(models):
                elapsed = time_forward(model, inputs[i])
                if step >= args.warmup:
                    times[i].append(elapsed)

    macs = [audit(name).gflops_exact for name in args.models]
    result = {
        "models": args.models, "batch": args.batch, "repeats": args.repeats,
        "median_s": [statistics.median(t) for t in times],
        "p20_s": [statistics.quantiles(t, n=5)[0] for t in times],
        "p80_s": [statistics.quantiles(t, n=5)[-1] for t in times],
        "gflops_exact": macs,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    result["time_ratio"] = result["median_s"][0] / result["median_s"][1]
    result["mac_ratio"] = macs[0] / macs[1]
    print(json.dumps(result, indent=2))
    a, b = args.models
    print(f"{a} / {b} forward time at batch {args.batch}: {result['time_ratio']:.3f} "
          f"(exact MAC ratio {result['mac_ratio']:.3f}; medians {result['median_s'][0] * 1e3:.1f} ms vs "
          f"{result['median_s'][1] * 1e3:.1f} ms over {args.repeats} interleaved runs, {result['threads']} threads)")


if __name__ == "__main__":
    main()
