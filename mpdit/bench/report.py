"""The Markdown tables `mpdit bench` prints, and its plots."""
import os

from mpdit.bench import kernel_cases
from mpdit.bench.profile import CATEGORIES
from mpdit.bench.timing import NOISY
from mpdit.io.files import atomic_path


def _get(results, label, provider, mode, metric, x=None):
    return results.value(label, provider, mode, metric, x)


def _fmt(value, spec=".1f", suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _rate(value) -> str:
    """A rate (images/s, TFLOP/s) to three significant figures, so that slow ones do not round
    to the same 0.1 while their ratio says otherwise."""
    return "-" if value is None else f"{value:.3g}"


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


def _spread(results, label, provider, mode, x=None):
    """(p80 - p20) / median of a timed row, or None."""
    median = _get(results, label, provider, mode, "median_ms", x)
    p20, p80 = _get(results, label, provider, mode, "p20_ms", x), _get(results, label, provider, mode, "p80_ms", x)
    return None if None in (median, p20, p80) or not median else (p80 - p20) / median


def _noisy(results, label, provider, mode, x=None) -> str:
    spread = _spread(results, label, provider, mode, x)
    return f" (noisy: p20-p80 {100 * spread:.0f}% of the median)" if spread is not None and spread > NOISY else ""


def _by_provider(results, label, mode, metric, x=None) -> dict:
    """{provider: value} of one figure, for the providers that have it."""
    found = ((p, _get(results, label, p, mode, metric, x)) for p in _providers(results, mode))
    return {p: v for p, v in found if v is not None}


def _best(results, label, mode, metric, x=None, lowest=False):
    """(value, provider) of the best provider for one figure, or (None, None)."""
    found = [(v, p) for p, v in _by_provider(results, label, mode, metric, x).items()]
    if not found:
        return None, None
    return min(found) if lowest else max(found)


def _xs(results, mode) -> list:
    """The shape labels (x) of a mode's rows, smallest batch first."""
    batches = {r["x"]: r.get("batch") or 0 for r in results.rows if r["mode"] == mode}
    return sorted(batches, key=batches.get)


def _batch(results, x: str) -> str:
    """'B=<batch>' of the rows measured at shape x ('-' for rows without the field: a bench.jsonl
    written before rows had it, read back by --resume)."""
    return next((f"B={r['batch']}" for r in results.rows if r["x"] == x and r.get("batch") is not None), "-")


def _sampling_runs(results) -> list:
    """The full-run modes (sample_<steps>_steps), fewest steps first."""
    return sorted({r["mode"] for r in results.rows if r["mode"].startswith("sample_") and r["mode"].endswith("_steps")},
                  key=lambda m: int(m.split("_")[1]))


def headline(results, meta) -> list:
    """Per model the best provider's figures; then each MPDiT against its baseline on the same
    provider (MPDiT's best among those both ran, named in each cell), next to the GFLOP ratio:
    does half the compute give twice the speed? A figure a side lacks (its case failed or did
    not run) is said, not replaced by another provider's."""
    labels = [label for label in _labels(results, "train") + _labels(results, "inference")
              + _labels(results, "sample_step")]
    labels = list(dict.fromkeys(labels))
    if not labels:
        return []
    xs, runs, sample_xs = _xs(results, "inference"), _sampling_runs(results), _xs(results, "sample_step")
    sampled = sample_xs if runs else []
    # each figure: (mode, metric, x, lower is better)
    kinds = {"train": ("train", "throughput", None, False)}
    if xs:
        kinds["inference"] = ("inference", "throughput", xs[-1], False)
        kinds["latency"] = ("inference", "median_ms", xs[0], True)
    for x in sampled:
        kinds["sampling", x] = (runs[-1], "run_ms", x, True)
        kinds["graph", x] = (runs[-1], "graph_run_ms", x, True)
    figures = {label: {kind: _best(results, label, mode, metric, x, lowest=lowest)
                       for kind, (mode, metric, x, lowest) in kinds.items()} for label in labels}

    def cell(value_provider, spec=None, scale=1.0):  # spec None: a rate, to three significant figures
        value, provider = value_provider or (None, None)
        if value is None:
            return "-"
        return f"{_rate(value * scale) if spec is None else format(value * scale, spec)} ({provider})"

    big = _batch(results, xs[-1]) if xs else "-"
    one = _batch(results, xs[0]) if xs else "-"
    steps = runs[-1].split("_")[1] if runs else "-"
    header = "".join(f" {steps}-step guided sampling s at {_batch(results, x)} | the same, CUDA graph |"
                     for x in sampled)
    lines = ["Headline: each model's best provider", "",
             f"| model | training images/s | inference images/s at {big} | latency ms at {one} |{header}",
             "|---|---|---|---|" + "---|---|" * len(sampled)]
    for label, f in figures.items():
        cells = "".join(f" {cell(f['sampling', x], '.2f', 1e-3)} | {cell(f['graph', x], '.2f', 1e-3)} |"
                        for x in sampled)
        lines.append(f"| {label} | {cell(f['train'])} | {cell(f.get('inference'))} | "
                     f"{cell(f.get('latency'), '.2f')} |" + cells)
    pairs = [(label, base) for label, base in meta.get("baselines", {}).items()
             if label in figures and base in figures]
    if pairs:
        columns = ["train", "inference", "latency"] + [("sampling", x) for x in sampled]
        lines += ["", "| MPDiT vs baseline, on the same provider | GFLOPs ratio (paper conv.) | training | "
                      "inference | latency |" + "".join(f" sampling {_batch(results, x)} |" for x in sampled),
                  "|---|---|---|---|---|" + "---|" * len(sampled)]
        for label, base in pairs:
            ratios = [_same_provider_ratio(results, label, base, *kinds[kind]) if kind in kinds else "-"
                      for kind in columns]
            flops = [_get(results, name, "-", "audit", "gflops_paper") for name in (label, base)]
            gflops = f"{flops[1] / flops[0]:.2f}x fewer" if None not in flops else "-"
            lines.append(f"| {label} vs {base} | {gflops} | " + " | ".join(ratios) + " |")
    return lines + [""]


def _same_provider_ratio(results, label, base, mode, metric, x, lower_is_better) -> str:
    """How many times faster `label` is than `base` on one provider, MPDiT's best of those both
    ran ("1.40x (native)"); else which side has no figure."""
    value = {name: _by_provider(results, name, mode, metric, x) for name in (label, base)}
    missing = [name for name in (label, base) if not value[name]]
    if missing:
        return f"- ({' and '.join(missing)}: no figure)"
    common = [p for p in value[label] if p in value[base]]
    if not common:
        return f"- (no provider ran both: {', '.join(value[label])} / {', '.join(value[base])})"
    provider = (min if lower_is_better else max)(common, key=value[label].get)
    mine, theirs = value[label][provider], value[base][provider]
    return f"{(theirs / mine if lower_is_better else mine / theirs):.2f}x ({provider})"


def markdown(results, meta, kernel_providers) -> str:
    env = meta["environment"]
    where = env.get("gpu") or f"{env['cpu']} ({env['threads']} threads)"
    peak = _get(results, "device", "-", "ceiling", "matmul_peak")
    copy = _get(results, "device", "-", "ceiling", "copy_bandwidth")
    lines = [f"## mpdit bench --preset {meta['preset']}: {where}, {meta['dtype']}", "",
             f"torch {env['torch']}, triton {env.get('triton')}, flash-attn {env.get('flash-attn')}, "
             f"xformers {env.get('xformers')}; attention paths: {', '.join(env.get('attention_paths') or ['-'])}",
             f"measured ceilings: matmul {_rate(peak)} TFLOP/s, device copy {_rate(copy)} GB/s", ""]
    lines += [f"note: {note}" for note in meta["notes"]]
    lines += [""] + headline(results, meta)

    if _labels(results, "audit"):
        lines += ["", "| model | params (M) | GFLOPs paper conv. | GFLOPs exact | training step GFLOP |",
                  "|---|---|---|---|---|"]
        for label in _labels(results, "audit"):
            values = [_get(results, label, "-", "audit", m) for m in
                      ("params", "gflops_paper", "gflops_exact", "train_step_gflop")]
            lines.append(f"| {label} | " + " | ".join(_fmt(v, ".2f") for v in values) + " |")
        lines += ["", "GFLOPs (paper conv. and exact) count multiply-accumulates of one forward pass per image, as "
                      "the papers do (`mpdit flops`); the training step column counts floating-point operations "
                      "(2 per multiply-accumulate) of forward and backward per image, as torch's FLOP counter "
                      "measures them."]

    baselines = meta.get("baselines", {})
    if _labels(results, "train"):
        lines += ["", "Training step (the trainer's: forward, backward, gradient clipping, AdamW, EMA), median of "
                      "the repetitions:", "",
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
                    f"{_fmt(_get(results, label, provider, 'train', 'p80_ms'))})"
                    f"{_noisy(results, label, provider, 'train')} | {_rate(rate)} | "
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
        for case, top in results.top_kernels().items():
            lines += ["", f"Longest kernels, {case} (ms per step): "
                      + "; ".join(f"{name[:70]} {ms:.2f}" for name, ms in top[:8])]

    if _labels(results, "inference"):
        xs = _xs(results, "inference")
        lines += ["", "Inference forward:", "",
                  "| model | provider | " + " | ".join(f"{x}: ms | images/s" for x in xs) + " |",
                  "|---|---|" + "---|---|" * len(xs)]
        for label in _labels(results, "inference"):
            for provider in _providers(results, "inference"):
                cells = []
                for x in xs:
                    cells += [_fmt(_get(results, label, provider, "inference", "median_ms", x), ".2f")
                              + _noisy(results, label, provider, "inference", x),
                              _rate(_get(results, label, provider, "inference", "throughput", x))]
                if any(c != "-" for c in cells):
                    lines.append(f"| {label} | {provider} | " + " | ".join(cells) + " |")

    if _labels(results, "sample_step"):
        runs = _sampling_runs(results)
        lines += ["", "Guided Euler sampling (one step timed over the repetitions; each full run timed once; "
                      "graph: every evaluation replayed from a CUDA graph):", "",
                  "| model | provider | batch | step ms | graph step ms | "
                  + " | ".join(f"{m.split('_')[1]}-step run s | graph s" for m in runs) + " |",
                  "|---|---|---|---|---|" + "---|---|" * len(runs)]
        for label in _labels(results, "sample_step"):
            for provider in _providers(results, "sample_step"):
                for x in _xs(results, "sample_step"):
                    step = _get(results, label, provider, "sample_step", "median_ms", x)
                    if step is None:
                        continue
                    cells = [_batch(results, x), f"{step:.2f}" + _noisy(results, label, provider, "sample_step", x),
                             _fmt(_get(results, label, provider, "sample_step", "graph_median_ms", x), ".2f")]
                    for mode in runs:
                        for metric in ("run_ms", "graph_run_ms"):
                            value = _get(results, label, provider, mode, metric, x)
                            cells.append(_fmt(value / 1e3 if value is not None else None, ".2f"))
                    lines.append(f"| {label} | {provider} | " + " | ".join(cells) + " |")

    if any(r["case"] in kernel_cases.CASES for r in results.rows):
        lines += ["", "Fused ops (time, GB/s and % of the device copy measured above):", "",
                  kernel_cases.summary(results, kernel_providers)]
    for error in results.errors:
        case = " ".join(part for part in error["case"] if part != "-")
        lines.append(f"\nFAILED {case}: {error['error']}")
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


def _title(meta, results, what: str, x: str = "") -> str:
    env = meta["environment"]
    where = env.get("gpu") or f"{env.get('cpu')} ({env.get('threads')} threads)"
    return f"{what}\n{where}, {meta['dtype']}{', ' + x if x else ''}, git {results.sha}"


def write_plots(results, folder: str, meta: dict, kernel_providers) -> list:
    """PNG plots into `folder`; returns the paths written (a plot without data is skipped). Each
    carries the device, dtype, batch and commit in its title, p20-p80 error bars and its values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        path = os.path.join(folder, name)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        written.append(path)

    train_labels = _labels(results, "train")
    train_x = next((r["x"] for r in results.rows if r["mode"] == "train"), "")
    if train_labels:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for provider in _providers(results, "train"):
            points = [(_get(results, label, "-", "audit", "gflops_exact"), _get(results, label, provider, "train",
                                                                                "throughput"), label)
                      for label in train_labels]
            points = [p for p in points if None not in p]
            ax.scatter([p[0] for p in points], [p[1] for p in points], label=provider)
            for gflops, rate, label in points:
                ax.annotate(f"{label}: {_rate(rate)}", (gflops, rate), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("GFLOPs per image (exact multiply-accumulates, forward)")
        ax.set_ylabel("training images / s")
        ax.set_title(_title(meta, results, "Training throughput against compute", train_x), fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "throughput_vs_gflops.png")

        fig, ax = plt.subplots(figsize=(8, 4.5))
        providers = _providers(results, "train")
        width = 0.8 / max(len(providers), 1)
        for i, provider in enumerate(providers):
            ratios, low, high = [], [], []
            for label in train_labels:
                eager = _get(results, label, "torch", "train", "median_ms")
                ms = [_get(results, label, provider, "train", m) for m in ("median_ms", "p80_ms", "p20_ms")]
                if eager and None not in ms:
                    ratio = eager / ms[0]  # time ratio: the speed-up; p80 time gives the low end
                    ratios.append(ratio)
                    low.append(ratio - eager / ms[1])
                    high.append(eager / ms[2] - ratio)
                else:
                    ratios.append(0.0), low.append(0.0), high.append(0.0)
            positions = [j + i * width for j in range(len(train_labels))]
            bars = ax.bar(positions, ratios, width, yerr=[low, high], capsize=2, label=provider)
            ax.bar_label(bars, labels=[f"{r:.2f}x" if r else "" for r in ratios], fontsize=6, padding=2)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks([j + width * (len(providers) - 1) / 2 for j in range(len(train_labels))])
        ax.set_xticklabels(train_labels, rotation=20, fontsize=8)
        ax.set_ylabel("training speed-up over eager torch (p20-p80)")
        ax.set_title(_title(meta, results, "Training step speed-up per provider", train_x), fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "speedup_per_backend.png")

    kernel_rows = [r for r in results.rows if r["case"] in kernel_cases.CASES and r["metric"] == "copy_fraction"]
    if kernel_rows:
        widest = max(kernel_rows, key=lambda r: r.get("width") or 0)["x"]
        keys = [(case, mode) for case in kernel_cases.CASES for mode in ("forward", "backward")
                if any(r["case"] == case and r["mode"] == mode and r["x"] == widest for r in kernel_rows)]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / len(kernel_providers)
        for i, provider in enumerate(kernel_providers):
            # above 100% of the copy is impossible: drawn at 0 and labelled, not plotted as measured
            values = [_get(results, case, provider, mode, "copy_fraction", widest) or 0.0 for case, mode in keys]
            shown = [v if v <= 100 else 0.0 for v in values]
            bars = ax.bar([j + i * width for j in range(len(keys))], shown, width, label=provider)
            ax.bar_label(bars, labels=[f"{v:.0f}%" if v <= 100 else "suspect" for v in values], fontsize=6,
                         padding=2)
        ax.axhline(100, color="grey", linewidth=0.8)
        ax.set_xticks([j + width * (len(kernel_providers) - 1) / 2 for j in range(len(keys))])
        ax.set_xticklabels([f"{c}\n{m}" for c, m in keys], rotation=30, fontsize=6, ha="right")
        ax.set_ylabel("% of the device-copy bandwidth")
        ax.set_title(_title(meta, results, "Fused ops: bandwidth", widest), fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "kernel_bandwidth.png")
    return written
