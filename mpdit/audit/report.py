"""`mpdit flops`: the audit of the paper's rows, or of one model, as a table or JSON."""
from mpdit.audit.flops import audit, row_dict
from mpdit.audit.paper import PAPER_ROWS


def _diff(ours, paper):
    return None if paper is None else round(ours - paper, 3)


def paper_report(device: str = "meta") -> list:
    """One dict per paper row: our counts, the paper's figures and the differences."""
    rows, by_label = [], {}
    for paper in PAPER_ROWS:
        row = row_dict(audit(paper.model, device=device, **paper.overrides))
        by_label[paper.label] = row
        row.update(section=paper.section, label=paper.label, overrides=dict(paper.overrides),
                   paper_params_m=paper.params_m, paper_gflops=paper.gflops,
                   params_diff=_diff(row["params_m"], paper.params_m),
                   gflops_diff=_diff(row["gflops_paper"], paper.gflops))
        if paper.ratio_to:
            base = by_label.get(paper.ratio_to) or row_dict(audit(paper.ratio_to, device=device))
            row.update(ratio_to=paper.ratio_to, ratio_pct=100 * row["gflops_paper"] / base["gflops_paper"],
                       ratio_exact_pct=100 * row["gflops_exact"] / base["gflops_exact"],
                       paper_ratio_pct=paper.ratio_pct)
        rows.append(row)
    return rows


def _fmt(value, spec=".1f"):
    return "" if value is None else format(value, spec)


def _signed(value):
    return "" if value is None else f"{value:+.2f}"


def format_table(rows: list) -> str:
    """Markdown table of paper rows (with the paper's figures) or of models (with their schedule)."""
    if not any("section" in row for row in rows):
        lines = ["| model | stages (patch, depth) | params (M) | GFLOPs paper conv. | GFLOPs exact | attention exact |",
                 "|" + "---|" * 6]
        for row in rows:
            stages = " ".join(f"{p}:{d}" for p, d in row["stages"])
            lines.append(f"| {row['name']} | {stages} | {row['params_m']:.2f} | {row['gflops_paper']:.2f} | "
                         f"{row['gflops_exact']:.2f} | {row['attention_gflops_exact']:.2f} |")
        return "\n".join(lines)
    lines = ["| row | params (M) | paper | diff | GFLOPs paper conv. | paper | diff | GFLOPs exact | "
             "attention exact |", "|" + "---|" * 9]
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            lines.append(f"| **{section}** |" + " |" * 8)
        note = ""
        if row.get("ratio_to"):
            note = (f" ({row['ratio_pct']:.1f}% of {row['ratio_to']}, paper {row['paper_ratio_pct']}%; "
                    f"exact {row['ratio_exact_pct']:.1f}%)")
        lines.append(
            f"| {row['label']}{note} | {row['params_m']:.2f} | {_fmt(row['paper_params_m'])} | "
            f"{_signed(row['params_diff'])} | {row['gflops_paper']:.2f} | {_fmt(row['paper_gflops'])} | "
            f"{_signed(row['gflops_diff'])} | {row['gflops_exact']:.2f} | {row['attention_gflops_exact']:.2f} |")
    return "\n".join(lines)


LEGEND = ("GFLOPs = multiply-accumulates (MACs) of one forward pass for one image: every matrix product "
          "(linear, patch conv, attention) counted on the instantiated model by torch.utils.flop_counter.\n"
          "'paper conv.' charges attention 2*L^2*D per block with L the fine image-token count (the paper's "
          "rule); 'exact' counts it at the real sequence lengths.")
PAPER_NOTE = "The paper prints DiT-B/2's 130.5 M parameters (DiT's own count) as 130.0."
