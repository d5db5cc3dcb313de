"""The Markdown tables `mpdit bench` prints, and its plots."""
import os

from mpdit.bench import kernel_cases
from mpdit.bench.profile import CATEGORIES


def _get(results, label, provider, mode, metric, x=None):
    for row in reversed(results.rows):
        if (row["case"], row["provider"], row["mode"], row["metric"]) == (label, provider, mode, metric) and \
                (x is None or row["x"] == x):
            return row["value"]
    return None


def _fmt(value, spec=".1f", suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _distinct(results, mode, key):
    """Values of `key` among the rows of `mode`, in first-seen order."""
    seen = []
    for row in results.rows:
        if row["mode"] == mode and row[key] not in seen:
            seen.append(row[key])
    return seen


def _labels(results, mode):
    return _distinct(results, mode, "case")


def _providers(results, mode):
    return _distinct(results, mode, "provider")


def markdown(results, meta, kernel_providers) -> str:
    env = meta["environment"]
    where = env.get("gpu") or f"{env['cpu']} ({env['threads']} threads)"
    peak = _get(results, "device", "-", "ceiling", "matmul_peak")
    copy = _get(results, "device", "-", "ceiling", "copy_bandwidth")
    lines = [f"## mpdit bench --preset {meta['preset']}: {where}, {meta['dtype']}", "",
             f"torch {env['torch']}, triton {env.get('triton')}, flash-attn {env.get('flash-attn')}, "
             f"xformers {env.get('xformers')}; attention paths: {', '.join(env.get('attention_paths') or ['-'])}",
             f"measured ceilings: matmul {peak:.1f} TFLOP/s, device copy {copy:.0f} GB/s", ""]
    lines += [f"note: {note}" for note in meta["notes"]]

    if _labels(results, "audit"):
        lines += ["", "| model | params (M) | GFLOPs paper conv. | GFLOPs exact | train step GFLOP (measured) |",
                  "|---|---|---|---|---|"]
        for label in _labels(results, "audit"):
            values = [_get(results, label, "-", "audit", m) for m in
                      ("params", "gflops_paper", "gflops_exact", "train_step_gflop")]
            lines.append(f"| {label} | " + " | ".join(_fmt(v, ".2f") for v in values) + " |")

    baselines = meta.get("baselines", {})
    if _labels(results, "train"):
        lines += ["", "Training step (forward, backward, gradient clipping, AdamW, EMA), median of the repetitions:", "",
                  "| model | provider | step ms (p20-p80) | images/s | MFU | peak GiB | vs torch | vs baseline |",
                  "|---|---|---|---|---|---|---|---|"]
        for label in _labels(results, "train"):
            eager = _get(results, label, "torch", "train", "throughput")
            for provider in _providers(results, "train"):
                rate = _get(results, label, provider, "train", "throughput")
                if rate is None:
                    continue
                base = baselines.get(label)
                base_rate = _get(results, base, provider, "train", "throughput") if base else None
                lines.append(
                    f"| {label} | {provider} | {_fmt(_get(results, label, provider, 'train', 'median_ms'))} "
                    f"({_fmt(_get(results, label, provider, 'train', 'p20_ms'))}-"
                    f"{_fmt(_get(results, label, provider, 'train', 'p80_ms'))}) | {rate:.1f} | "
                    f"{_fmt(_get(results, label, provider, 'train', 'mfu'), '.1f', '%')} | "
                    f"{_fmt(_get(results, label, provider, 'train', 'peak_memory'), '.1f')} | "
                    f"{_fmt(rate / eager if eager else None, '.2f', 'x')} | "
                    f"{_fmt(rate / base_rate if base_rate else None, '.2f', 'x')} {f'({base})' if base_rate else ''}|")

    if _labels(results, "profile"):
        lines += ["", profile_table(results)]
        for case in _labels(results, "attention"):
            timings = [(provider, _get(results, case, provider, "attention", "fwd_bwd_ms"))
                       for provider in _providers(results, "attention")]
            lines += ["", f"{case}, forward + backward ms: "
                      + "; ".join(f"{provider} {ms:.3f}" for provider, ms in timings if ms is not None)]
        for case, top in results.top_kernels.items():
            lines += ["", f"Longest kernels, {case} (ms per step): "
                      + "; ".join(f"{name[:70]} {ms:.2f}" for name, ms in top[:8])]

    if _labels(results, "inference"):
        xs = sorted({r["x"] for r in results.rows if r["mode"] == "inference"}, key=lambda x: int(x.split()[0][2:]))
        lines += ["", "Inference forward:", "",
                  "| model | provider | " + " | ".join(f"{x}: ms | images/s" for x in xs) + " |",
                  "|---|---|" + "---|---|" * len(xs)]
        for label in _labels(results, "inference"):
            for provider in _providers(results, "inference"):
                cells = []
                for x in xs:
                    cells += [_fmt(_get(results, label, provider, "inference", "median_ms", x), ".2f"),
                              _fmt(_get(results, label, provider, "inference", "throughput", x), ".1f")]
                if any(c != "-" for c in cells):
                    lines.append(f"| {label} | {provider} | " + " | ".join(cells) + " |")

    if _labels(results, "sample_step"):
        runs = sorted({r["mode"] for r in results.rows if r["mode"].startswith("sample_") and r["mode"].endswith(
            "_steps")}, key=lambda m: int(m.split("_")[1]))
        lines += ["", "Guided Euler sampling (one step timed over the repetitions; each full run timed once):", "",
                  "| model | provider | step ms | " + " | ".join(f"{m.split('_')[1]}-step run s" for m in runs)
                  + " | CUDA-graph step ms | eager step ms |", "|---|---|---|" + "---|" * len(runs) + "---|---|"]
        for label in _labels(results, "sample_step"):
            for provider in _providers(results, "sample_step"):
                step = _get(results, label, provider, "sample_step", "median_ms")
                if step is None:
                    continue
                run_s = [_get(results, label, provider, m, "run_ms") for m in runs]
                lines.append(f"| {label} | {provider} | {step:.2f} | "
                             + " | ".join(_fmt(v / 1e3 if v else None, ".2f") for v in run_s) + " | "
                             + f"{_fmt(_get(results, label, provider, 'sample_step', 'graph_replay_ms'), '.2f')} | "
                             + f"{_fmt(_get(results, label, provider, 'sample_step', 'eager_ms'), '.2f')} |")

    if any(r["case"] in kernel_cases.CASES for r in results.rows):
        lines += ["", "Fused ops (time, GB/s and % of the device copy measured above):", "",
                  kernel_cases.summary(results, kernel_providers)]
    for error in results.errors:
        lines.append(f"\nFAILED {error.get('section')} {error.get('model', '')} {error.get('provider', '')}: "
                     f"{error['error']}")
    return "\n".join(lines)


def profile_table(results) -> str:
    """Where each profiled step's device time went: ms and share of the step's span."""
    lines = ["Where a training step's time goes (torch.profiler, ms per step and % of the device span):", "",
             "| model | provider | step span ms | " + " | ".join(CATEGORIES) + " |",
             "|---|---|---|" + "---|" * len(CATEGORIES)]
    for label in _labels(results, "profile"):
        for provider in _providers(results, "profile"):
            span = _get(results, label, provider, "profile", "step_ms")
            if not span:
                continue
            cells = [f"{value:.1f} ({100 * value / span:.0f}%)"
                     for value in (_get(results, label, provider, "profile", c) or 0.0 for c in CATEGORIES)]
            lines.append(f"| {label} | {provider} | {span:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plots(results, folder: str, baselines: dict, kernel_providers) -> list:
    """PNG plots into `folder`; returns the paths written (a plot without data is skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        path = os.path.join(folder, name)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    train_labels = _labels(results, "train")
    if train_labels:
        fig, ax = plt.subplots(figsize=(6, 4))
        for provider in _providers(results, "train"):
            points = [(_get(results, label, "-", "audit", "gflops_exact"), _get(results, label, provider, "train",
                                                                                "throughput"), label)
                      for label in train_labels]
            points = [p for p in points if None not in p]
            ax.scatter([p[0] for p in points], [p[1] for p in points], label=provider)
            for gflops, rate, label in points:
                ax.annotate(label, (gflops, rate), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("GFLOPs per image (exact MACs)")
        ax.set_ylabel("training images/s")
        ax.set_title("Training throughput against compute")
        ax.legend(fontsize=8)
        save(fig, "throughput_vs_gflops.png")

        fig, ax = plt.subplots(figsize=(7, 4))
        providers = _providers(results, "train")
        width = 0.8 / max(len(providers), 1)
        for i, provider in enumerate(providers):
            ratios = []
            for label in train_labels:
                eager, rate = (_get(results, label, p, "train", "throughput") for p in ("torch", provider))
                ratios.append(rate / eager if rate and eager else 0.0)
            ax.bar([j + i * width for j in range(len(train_labels))], ratios, width, label=provider)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks([j + width * (len(providers) - 1) / 2 for j in range(len(train_labels))])
        ax.set_xticklabels(train_labels, rotation=20, fontsize=8)
        ax.set_ylabel("training speed-up over eager torch")
        ax.legend(fontsize=8)
        save(fig, "speedup_per_backend.png")

    kernel_rows = [r for r in results.rows if r["case"] in kernel_cases.CASES and r["metric"] == "copy_fraction"]
    if kernel_rows:
        widest = max({r["x"] for r in kernel_rows}, key=lambda x: int(x.split()[1][2:]))
        keys = [(case, mode) for case in kernel_cases.CASES for mode in ("forward", "backward")
                if any(r["case"] == case and r["mode"] == mode and r["x"] == widest for r in kernel_rows)]
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(kernel_providers)
        for i, provider in enumerate(kernel_providers):
            values = [_get(results, case, provider, mode, "copy_fraction", widest) or 0.0 for case, mode in keys]
            ax.bar([j + i * width for j in range(len(keys))], values, width, label=provider)
        ax.set_xticks([j + width * (len(kernel_providers) - 1) / 2 for j in range(len(keys))])
        ax.set_xticklabels([f"{c}\n{m}" for c, m in keys], rotation=30, fontsize=6, ha="right")
        ax.set_ylabel("% of device copy bandwidth")
        ax.set_title(f"Fused ops, {widest}")
        ax.legend(fontsize=8)
        save(fig, "kernel_bandwidth.png")
    return written
