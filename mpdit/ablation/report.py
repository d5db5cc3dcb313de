"""The ablation's table and plot: each row's params, GFLOPs, training images/s and quality (mean
and spread over the seeds) beside the paper's printed figures; quality against training compute.

Rewritten from results.jsonl after every finished row, so the folder always shows what is done.
"""
import json
import math
import os
import statistics

from mpdit.io.files import atomic_path

TABLE_NAMES = {"1": "Table 1: the components, one at a time", "4": "Table 4: the fine depth k"}
TABLE_1_ORDER = ("dit", "shared-adaln", "class-tokens", "fno-time", "mpdit-k6")  # each adds one component
# the quality figure of each evaluation, first found wins: Inception's FID, or the digits classifier's
QUALITY = (("fid", "FID"), ("fd_digits", "FD (digits features)"))


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        raise ValueError(f"{path}: not valid JSON; expected the ablation's settings (remove it to start over)") \
            from None


def write_json(path: str, value) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


def spread(values: list) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def quality_metric(results: list):
    """(key, name) of the quality figure the results carry, or (None, None) before any."""
    for key, name in QUALITY:
        if any(key in result["final"] for result in results):
            return key, name
    return None, None


def summarize(described: list, results: list, seeds: tuple) -> list:
    """One dict per table row: its description, and over the requested seeds that are done, the
    quality figures (mean, spread), precision, recall, images/s and each evaluation's mean."""
    key, _ = quality_metric(results)
    by_run = {(r["network"], r["seed"]): r for r in results}
    summary = []
    for row in described:
        done = [by_run[(row["network"], seed)] for seed in seeds if (row["network"], seed) in by_run]
        entry = {**row, "seeds_done": [r["seed"] for r in done]}
        if done:
            entry["images_per_s"] = statistics.fmean(r["images_per_s"] for r in done)
            for name in (key, "precision", "recall", "fd_digits_floor"):
                values = [r["final"][name] for r in done if name in r["final"]]
                if values:
                    entry[name] = spread(values)
            entry["curve"] = _curve(done, key)
        summary.append(entry)
    return summary


def _curve(done: list, key: str) -> list:
    """(compute, images seen, quality mean, quality sd) at each evaluation step all seeds reached."""
    steps = set.intersection(*({e["step"] for e in r["evaluations"]} for r in done))
    points = []
    for step in sorted(steps):
        at = [next(e for e in r["evaluations"] if e["step"] == step) for r in done]
        values = spread([e[key] for e in at])
        points.append({"step": step, "compute_gflop": at[0]["compute_gflop"], "images_seen": at[0]["images_seen"],
                       "mean": values["mean"], "sd": values["sd"]})
    return points


def _figure(stats, digits: int = 2) -> str:
    if not stats:
        return ""
    text = f"{stats['mean']:.{digits}f}"
    return text + (f" ± {stats['sd']:.{digits}f}" if stats["n"] > 1 else "")


def number(value, spec: str = ".1f") -> str:
    return "" if value is None else format(value, spec)


def format_table(summary: list, results: list) -> str:
    """The markdown table, one section per paper table, with each row's difference from the row it
    is compared with (compared_with) beside the paper's."""
    key, name = quality_metric(results)
    name = name or "quality"
    seeds = max((len(row["seeds_done"]) for row in summary), default=0)
    lines = [f"| row | params (M) | GFLOPs | train img/s | {name} (mean ± sd, {seeds} seed{'s' * (seeds != 1)}) | Δ | "
             "precision | "
             "recall | paper: params (M) | GFLOPs | FID | Δ |", "|" + "---|" * 12]
    table = None
    for index, row in enumerate(summary):
        if row["table"] != table:
            table = row["table"]
            lines.append(section_line(row, 12))
        base = compared_with(summary, index)
        lines.append(f"| {row['label']} | {row['params_m']:.2f} | {row['gflops']:.3f} | "
                     f"{number(row.get('images_per_s'))} | {_figure(row.get(key))} | {_difference(row, base, key)} | "
                     f"{_figure(row.get('precision'), 3)} | {_figure(row.get('recall'), 3)} | "
                     f"{number(row['paper_params_m'])} | {number(row['paper_gflops'])} | "
                     f"{number(row['paper_fid'], '.2f')} | {_paper_difference(row, base)} |")
    lines += ["", "Δ: the difference from the row it is compared with (Table 1: the row above, one component fewer; "
              "Table 4: the DiT with the upgrades); lower is better. A tie: the difference is within the sum of "
              "the two rows' standard deviations over the seeds."]
    floors = [row["fd_digits_floor"]["mean"] for row in summary if "fd_digits_floor" in row]
    if floors:
        lines.append(f"Real held-out digits score FD {statistics.fmean(floors):.2f} against the same training digits "
                     "(the floor: what real data reaches).")
    return "\n".join(lines)


def compared_with(summary: list, index: int):
    """The row `summary[index]` is compared with, where the table shows it: in Table 1 the paper's
    row above (one component fewer), in Table 4 the DiT with the upgrades; else None."""
    row = summary[index]
    if row["table"] == "1":
        order = TABLE_1_ORDER
        base = order[order.index(row["key"]) - 1] if row["key"] in order[1:] else None
    else:
        base = "upgrades" if row["key"] != "upgrades" else None
    return next((other for other in summary if other["table"] == row["table"] and other["key"] == base), None)


def _difference(row: dict, base, key: str) -> str:
    if base is None or key not in row or key not in base:
        return ""
    mine, theirs = row[key], base[key]
    delta = mine["mean"] - theirs["mean"]
    tie = mine["n"] > 1 and theirs["n"] > 1 and abs(delta) <= mine["sd"] + theirs["sd"]
    return f"{delta:+.2f}" + (" (tie)" if tie else "")


def _paper_difference(row: dict, base) -> str:
    if base is None or row["paper_fid"] is None or base["paper_fid"] is None:
        return ""
    return f"{row['paper_fid'] - base['paper_fid']:+.2f}"


def section_line(row: dict, columns: int) -> str:
    """The table's heading row: which paper table, and the size of the paper's figures."""
    return (f"| **{TABLE_NAMES[row['table']]}** (paper figures: {row['paper_size']}, ImageNet 256, 80 epochs) |"
            + " |" * (columns - 1))


def write(out: str, described: list, results: list, seeds: tuple) -> None:
    """table.md, summary.json and ablation.png in `out`, from the results so far."""
    summary = summarize(described, results, seeds)
    with atomic_path(os.path.join(out, "table.md")) as tmp, open(tmp, "w") as f:
        f.write(format_table(summary, results) + "\n")
    write_json(os.path.join(out, "summary.json"), summary)
    if any(row.get("curve") for row in summary):
        plot(summary, quality_metric(results)[1], os.path.join(out, "ablation.png"))


def plot(summary: list, quality: str, path: str) -> None:
    """Quality against training compute (forward GFLOPs x images seen), one panel per table, one
    line per row (the mean over seeds at each evaluation, the spread as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(dict.fromkeys(row["table"] for row in summary))
    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 4.6), squeeze=False)
    for axis, table in zip(axes[0], tables):
        for row in (r for r in summary if r["table"] == table and r.get("curve")):
            curve = row["curve"]
            x = [point["compute_gflop"] for point in curve]
            line = axis.errorbar(x, [p["mean"] for p in curve], yerr=[p["sd"] for p in curve], marker="o",
                                 capsize=3, label=f"{row['label']} ({row['gflops']:.3g} GFLOPs)")
            axis.annotate(row["key"], (x[-1], curve[-1]["mean"]), textcoords="offset points", xytext=(4, 4),
                          fontsize=8, color=line[0].get_color())
        axis.set_xscale("log" if _spans_decades(axis) else "linear")
        axis.set_xlabel("training compute: forward GFLOPs per image x images seen")
        axis.set_ylabel(f"{quality} (lower is better)")
        axis.set_title(TABLE_NAMES[table])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _spans_decades(axis) -> bool:
    low, high = axis.dataLim.intervalx
    return low > 0 and math.log10(high / low) > 1


def format_rows(described: list) -> str:
    """--dry-run's table: each row's key, switches and counts, the paper's figures beside."""
    lines = ["| key | row | model and switches | params (M) | GFLOPs | paper: params (M) | GFLOPs | FID |",
             "|" + "---|" * 8]
    table = None
    for row in described:
        if row["table"] != table:
            table = row["table"]
            lines.append(section_line(row, 8))
        switches = ", ".join(f"{name}={value}" for name, value in row["overrides"].items()) or "as registered"
        lines.append(f"| {row['key']} | {row['label']} | {row['model']}: {switches} | "
                     f"{row['params_m']:.2f} | {row['gflops']:.2f} | {number(row['paper_params_m'])} | "
                     f"{number(row['paper_gflops'])} | {number(row['paper_fid'], '.2f')} |")
    return "\n".join(lines)
