"""bench.md, one function per table, and the plots. Every figure is looked up by its key and Shape
(Results.value); a figure a case did not record prints as "-"."""
import os
from dataclasses import replace

from mpdit.bench import kernel_cases
from mpdit.bench.profile import CATEGORIES
from mpdit.bench.timing import NOISY
from mpdit.io.files import atomic_path

TIMES = ("median_ms", "p20_ms", "p80_ms")


def _fmt(value, spec=".1f", suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _rate(value) -> str:
    """A rate (images/s, TFLOP/s) to three significant figures, so that slow ones do not round
    to the same 0.1 while their ratio says otherwise."""
    return "-" if value is None else f"{value:.3g}"


def _batch(shape) -> str:
    return "-" if shape is None or shape.batch is None else f"B={shape.batch}"


def _table(intro: str, header: list, rows: list) -> list:
    """A Markdown table after a blank line (and its introduction, if any); none without rows."""
    if not rows:
        return []
    return ["", *([intro, ""] if intro else []), "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _noisy(results, case, provider, mode, shape=None, short=False) -> str:
    """The mark of a time whose p20-p80 spread passes NOISY of its median, else ""."""
    median, p20, p80 = (results.value(case, provider, mode, m, shape) for m in TIMES)
    if None in (median, p20, p80) or not median or (p80 - p20) / median <= NOISY:
        return ""
    return " (noisy)" if short else f" (noisy: p20-p80 {100 * (p80 - p20) / median:.0f}% of the median)"


def _by_provider(results, case, mode, metric, shape=None) -> dict:
    """{provider: value} of one figure, for the providers that have it."""
    found = {p: results.value(case, p, mode, metric, shape) for p in results.distinct(mode, "provider")}
    return {p: v for p, v in found.items() if v is not None}


def _figures(results) -> tuple:
    """The headline's figures {kind: (mode, metric, shape, lower is better)} and the batch Shapes
    of the sampling columns (each at the most steps run)."""
    shapes, steps = results.shapes("inference"), sorted({s.steps for s in results.shapes("sample_run")})
    sampled = results.shapes("sample_step") if steps else []
    kinds = {"train": ("train", "throughput", None, False)}
    if shapes:
        kinds.update(inference=("inference", "throughput", shapes[-1], False),
                     latency=("inference", "median_ms", shapes[0], True))
    for shape in sampled:
        kinds["sampling", shape] = ("sample_run", "run_ms", replace(shape, steps=steps[-1]), True)
        kinds["graph", shape] = ("sample_run", "graph_run_ms", replace(shape, steps=steps[-1]), True)
    return kinds, sampled


def headline(results, meta) -> list:
    """Per model the best provider's figures, then each MPDiT against its baseline (baseline_table)."""
    labels = list(dict.fromkeys(results.distinct("train", "case") + results.distinct("inference", "case")
                                + results.distinct("sample_step", "case")))
    if not labels:
        return []
    (kinds, sampled), shapes = _figures(results), results.shapes("inference")

    def best(label, kind, spec=None, scale=1.0):  # spec None: a rate, to three significant figures
        mode, metric, shape, lowest = kinds.get(kind, (None,) * 4)
        found = _by_provider(results, label, mode, metric, shape) if mode else {}
        if not found:
            return "-"
        provider = (min if lowest else max)(found, key=found.get)
        value = found[provider] * scale
        return f"{_rate(value) if spec is None else format(value, spec)} ({provider})"

    steps = kinds["sampling", sampled[0]][2].steps if sampled else None
    header = ["model", "training images/s", f"inference images/s at {_batch(shapes[-1] if shapes else None)}",
              f"latency ms at {_batch(shapes[0] if shapes else None)}"]
    header += [text for s in sampled for text in (f"{steps}-step guided sampling s at {_batch(s)}",
                                                  "the same, CUDA graph")]
    rows = [[label, best(label, "train"), best(label, "inference"), best(label, "latency", ".2f")]
            + [best(label, (kind, s), ".2f", 1e-3) for s in sampled for kind in ("sampling", "graph")]
            for label in labels]
    return _table("Headline: each model's best provider", header, rows)[1:] + \
        baseline_table(results, meta, labels, kinds, sampled) + [""]


def baseline_table(results, meta, labels, kinds, sampled) -> list:
    """Each MPDiT against its baseline on one provider (MPDiT's best among those both ran, named in
    each cell), beside the GFLOP ratio: does half the compute give twice the speed? A figure a side
    lacks (its case failed or did not run) is said, not taken from another provider."""
    rows = []
    for label, base in meta.get("baselines", {}).items():
        if label in labels and base in labels:
            flops = [results.value(name, "-", "audit", "gflops_paper") for name in (label, base)]
            rows.append([f"{label} vs {base}", f"{flops[1] / flops[0]:.2f}x fewer" if None not in flops else "-"]
                        + [_same_provider_ratio(results, label, base, *kinds[kind]) if kind in kinds else "-"
                           for kind in ["train", "inference", "latency"] + [("sampling", s) for s in sampled]])
    return _table("", ["MPDiT vs baseline, on the same provider", "GFLOPs ratio (paper conv.)", "training",
                       "inference", "latency"] + [f"sampling {_batch(s)}" for s in sampled], rows)


def _same_provider_ratio(results, label, base, mode, metric, shape, lower_is_better) -> str:
    """How many times faster `label` is than `base` on one provider ("1.40x (native)"); else
    which side has no figure."""
    value = {name: _by_provider(results, name, mode, metric, shape) for name in (label, base)}
    missing = [name for name in (label, base) if not value[name]]
    if missing:
        return f"- ({' and '.join(missing)}: no figure)"
    common = [p for p in value[label] if p in value[base]]
    if not common:
        return f"- (no provider ran both: {', '.join(value[label])} / {', '.join(value[base])})"
    provider = (min if lower_is_better else max)(common, key=value[label].get)
    mine, theirs = value[label][provider], value[base][provider]
    return f"{(theirs / mine if lower_is_better else mine / theirs):.2f}x ({provider})"


def audit_table(results) -> list:
    rows = [[label] + [_fmt(results.value(label, "-", "audit", m), ".2f") for m in
                       ("params", "gflops_paper", "gflops_exact", "train_step_gflop")]
            for label in results.distinct("audit", "case")]
    table = _table("", ["model", "params (M)", "GFLOPs paper conv.", "GFLOPs exact", "training step GFLOP"], rows)
    return table + (["", "GFLOPs (paper conv. and exact) count multiply-accumulates of one forward pass per image, as "
                         "the papers do (`mpdit flops`); the training step column counts floating-point operations "
                         "(2 per multiply-accumulate) of forward and backward per image, as torch's FLOP counter "
                         "measures them."] if table else [])


def train_table(results, baselines: dict) -> list:
    rows = []
    for label in results.distinct("train", "case"):
        eager, base = results.value(label, "torch", "train", "throughput"), baselines.get(label)
        for provider in results.distinct("train", "provider"):
            get = lambda metric, who=label: results.value(who, provider, "train", metric)
            rate, base_rate = get("throughput"), get("throughput", base) if base else None
            if rate is not None:
                rows.append([label, provider, f"{_fmt(get('median_ms'))} ({_fmt(get('p20_ms'))}-"
                             f"{_fmt(get('p80_ms'))}){_noisy(results, label, provider, 'train')}", _rate(rate),
                             _fmt(get("mfu"), ".1f", "%"), _fmt(get("peak_memory"), ".1f"),
                             _fmt(rate / eager if eager else None, ".2f", "x"),
                             _fmt(rate / base_rate if base_rate else None, ".2f", "x")
                             + (f" ({base})" if base_rate else "")])
    return _table("Training step (the trainer's: forward, backward, gradient clipping, AdamW, EMA), median of the "
                  "repetitions:", ["model", "provider", "step ms (p20-p80)", "images/s", "MFU", "peak GiB",
                                   "vs torch", "vs baseline"], rows)


def profile_table(results) -> list:
    """Where each profiled step's device time went (ms and share of the step's span), the
    attention timings and the longest kernels."""
    rows = []
    for label in results.distinct("profile", "case"):
        for provider in results.distinct("profile", "provider"):
            span = results.value(label, provider, "profile", "step_ms")
            if span:
                rows.append([label, provider, f"{span:.1f}"] + [
                    f"{value:.1f} ({100 * value / span:.0f}%)" for value in
                    (results.value(label, provider, "profile", c) or 0.0 for c in CATEGORIES)])
    lines = _table("Where a training step's time goes (torch.profiler, ms per step and % of the device span):",
                   ["model", "provider", "step span ms", *CATEGORIES], rows)
    for case in results.distinct("attention", "case"):
        timings = {p: results.value(case, p, "attention", "fwd_bwd_ms") for p in results.distinct("attention",
                                                                                                  "provider")}
        lines += ["", f"{case}, forward + backward ms: " + "; ".join(f"{p} {ms:.3f}" for p, ms in timings.items()
                                                                      if ms is not None)]
    for case, top in results.top_kernels().items():
        lines += ["", f"Longest kernels, {case} (ms per step): " + "; ".join(f"{name[:70]} {ms:.2f}"
                                                                            for name, ms in top[:8])]
    return lines


def inference_table(results) -> list:
    shapes, rows = results.shapes("inference"), []
    for label in results.distinct("inference", "case"):
        for provider in results.distinct("inference", "provider"):
            cells = [cell for s in shapes for cell in (
                _fmt(results.value(label, provider, "inference", "median_ms", s), ".2f")
                + _noisy(results, label, provider, "inference", s),
                _rate(results.value(label, provider, "inference", "throughput", s)))]
            if any(c != "-" for c in cells):
                rows.append([label, provider, *cells])
    return _table("Inference forward:", ["model", "provider"] + [text for s in shapes for text in
                                                                 (f"{s.label}: ms", "images/s")], rows)


def sampling_table(results) -> list:
    steps, rows = sorted({s.steps for s in results.shapes("sample_run")}), []
    for label in results.distinct("sample_step", "case"):
        for provider in results.distinct("sample_step", "provider"):
            for s in results.shapes("sample_step"):
                step = results.value(label, provider, "sample_step", "median_ms", s)
                if step is not None:
                    runs = [results.value(label, provider, "sample_run", metric, replace(s, steps=n))
                            for n in steps for metric in ("run_ms", "graph_run_ms")]
                    rows.append([label, provider, _batch(s), f"{step:.2f}" + _noisy(results, label, provider,
                                                                                      "sample_step", s),
                                 _fmt(results.value(label, provider, "sample_step", "graph_median_ms", s), ".2f")]
                                + [_fmt(ms / 1e3 if ms is not None else None, ".2f") for ms in runs])
    return _table("Guided Euler sampling (one step timed over the repetitions; each full run timed once; graph: every "
                  "evaluation replayed from a CUDA graph):", ["model", "provider", "batch", "step ms", "graph step ms"]
                  + [text for n in steps for text in (f"{n}-step run s", "graph s")], rows)


def kernel_table(results, providers) -> list:
    """One line per op, mode and shape; ratios are the other providers' time over the last's. A
    bandwidth above the measured copy's is impossible and is flagged instead of printed, and that
    row gets no ratio; nor does an op whose backward runs no kernel of its own (fine_entry's only
    routes views)."""
    fused, rows = providers[-1] if providers else None, []
    for shape in sorted(results.shapes("forward"), key=lambda s: (s.width or 0, s.batch or 0)):  # the ops' rows
        for case in kernel_cases.CASES:
            for mode in ("forward", "backward"):
                ms = [results.value(case, p, mode, "median_ms", shape) for p in providers]
                if not providers or None in ms:
                    continue
                gbs, pct = (results.value(case, fused, mode, m, shape) for m in ("bandwidth", "copy_fraction"))
                suspect = pct is not None and pct > 100
                moved = ["-", "-"] if gbs is None else ["above the copy: timing suspect", "-"] if suspect else \
                    [f"{gbs:.0f}", f"{pct:.0f}%"]
                no_ratio = (mode == "backward" and case in kernel_cases.NO_BACKWARD_KERNEL) or suspect
                rows.append([case, shape.label, mode] + [f"{value:.3f}" + _noisy(results, case, p, mode, shape, True)
                                                         for p, value in zip(providers, ms)]
                            + moved + ["-" if no_ratio else f"{v / ms[-1]:.2f}x" for v in ms[:-1]])
    return _table("Fused ops (time, GB/s and % of the device copy measured above):",
                  ["op", "shape", "mode", *(f"{p} ms" for p in providers), f"{fused} GB/s", "% of copy",
                   *(f"{p} / {fused}" for p in providers[:-1])], rows)


def markdown(results, meta, kernel_providers) -> str:
    env = meta["environment"]
    where = env.get("gpu") or f"{env['cpu']} ({env['threads']} threads)"
    peak, copy = (results.value("device", "-", "ceiling", m) for m in ("matmul_peak", "copy_bandwidth"))
    lines = [f"## mpdit bench --preset {meta['preset']}: {where}, {meta['dtype']}", "",
             f"torch {env['torch']}, triton {env.get('triton')}, flash-attn {env.get('flash-attn')}, "
             f"xformers {env.get('xformers')}; attention paths: {', '.join(env.get('attention_paths') or ['-'])}",
             f"measured ceilings: matmul {_rate(peak)} TFLOP/s, device copy {_rate(copy)} GB/s", ""]
    lines += [f"note: {note}" for note in meta["notes"]] + [""] + headline(results, meta)
    lines += audit_table(results) + train_table(results, meta.get("baselines", {})) + profile_table(results)
    lines += inference_table(results) + sampling_table(results) + kernel_table(results, kernel_providers)
    return "\n".join(lines + [f"\nFAILED {' '.join(p for p in error['case'] if p != '-')}: {error['error']}"
                              for error in results.errors])


def write_plots(results, folder: str, meta: dict, kernel_providers) -> list:
    """PNG plots into `folder`; returns the paths written (a plot without data is skipped). Each
    carries the device, dtype, batch and commit in its title, p20-p80 error bars and its values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env, written = meta["environment"], []
    where = env.get("gpu") or f"{env.get('cpu')} ({env.get('threads')} threads)"

    def save(fig, ax, name, title, shape, ylabel):
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}\n{where}, {meta['dtype']}{', ' + shape.label if shape else ''}, git {results.sha}",
                     fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(os.path.join(folder, name)) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        written.append(os.path.join(folder, name))

    def bars(groups, providers, value_of, width_in: float, errors: bool):  # one bar per (group, provider)
        fig, ax = plt.subplots(figsize=(width_in, 4.5))
        width = 0.8 / max(len(providers), 1)
        for i, provider in enumerate(providers):
            values = [value_of(group, provider) for group in groups]  # (height, error below, error above, label)
            drawn = ax.bar([j + i * width for j in range(len(groups))], [v[0] for v in values], width, label=provider,
                           **({"yerr": [[v[1] for v in values], [v[2] for v in values]], "capsize": 2} if errors
                              else {}))
            ax.bar_label(drawn, labels=[v[3] for v in values], fontsize=6, padding=2)
        ax.set_xticks([j + width * (len(providers) - 1) / 2 for j in range(len(groups))])
        return fig, ax

    labels, providers = results.distinct("train", "case"), results.distinct("train", "provider")
    shape = results.shapes("train")[0] if labels else None
    if labels:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for provider in providers:
            points = [(results.value(label, "-", "audit", "gflops_exact"),
                       results.value(label, provider, "train", "throughput"), label) for label in labels]
            points = [p for p in points if None not in p]
            ax.scatter([p[0] for p in points], [p[1] for p in points], label=provider)
            for gflops, rate, label in points:
                ax.annotate(f"{label}: {_rate(rate)}", (gflops, rate), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("GFLOPs per image (exact multiply-accumulates, forward)")
        save(fig, ax, "throughput_vs_gflops.png", "Training throughput against compute", shape, "training images / s")

        def speedup(label, provider):  # time ratio against eager torch; the p80 time gives the low end
            eager = results.value(label, "torch", "train", "median_ms")
            ms = [results.value(label, provider, "train", m) for m in ("median_ms", "p80_ms", "p20_ms")]
            if not eager or None in ms:
                return 0.0, 0.0, 0.0, ""
            ratio = eager / ms[0]
            return ratio, ratio - eager / ms[1], eager / ms[2] - ratio, f"{ratio:.2f}x"

        fig, ax = bars(labels, providers, speedup, 8, errors=True)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticklabels(labels, rotation=20, fontsize=8)
        save(fig, ax, "speedup_per_backend.png", "Training step speed-up per provider", shape,
             "training speed-up over eager torch (p20-p80)")

    kernel_shapes = [s for s in results.shapes("forward") if s.width is not None]
    if kernel_shapes and kernel_providers:
        widest = max(kernel_shapes, key=lambda s: s.width)
        keys = [(case, mode) for case in kernel_cases.CASES for mode in ("forward", "backward")
                if any(results.value(case, p, mode, "copy_fraction", widest) is not None for p in kernel_providers)]

        def fraction(key, provider):  # above 100% of the copy is impossible: drawn at 0 and labelled
            value = results.value(key[0], provider, key[1], "copy_fraction", widest) or 0.0
            return (value if value <= 100 else 0.0), 0.0, 0.0, f"{value:.0f}%" if value <= 100 else "suspect"

        fig, ax = bars(keys, kernel_providers, fraction, 9, errors=False)
        ax.axhline(100, color="grey", linewidth=0.8)
        ax.set_xticklabels([f"{c}\n{m}" for c, m in keys], rotation=30, fontsize=6, ha="right")
        save(fig, ax, "kernel_bandwidth.png", "Fused ops: bandwidth", widest, "% of the device-copy bandwidth")
    return written
