"""`mpdit flops`: the audit of the paper's rows, or of one model, as a table or JSON."""
from mpdit.flops import audit, row_dict
from mpdit.paper import PAPER_ROWS


def _diff(ours, paper):
    return None if paper is None else round(ours - paper, 3)


def paper_report(device: str = "meta") -> list:
    """One dict per paper row: our counts, the paper's figures and the differences."""
    rows, gflops_by_label = [], {}
    for paper in PAPER_ROWS:
        row = row_dict(audit(paper.model, device=device, **paper.overrides))
        gflops_by_label[paper.label] = row["gflops_paper"]
        row.update(section=paper.section, label=paper.label, overrides=dict(paper.overrides),
                   paper_params_m=paper.params_m, paper_gflops=paper.gflops,
                   params_diff=_diff(row["params_m"], paper.params_m),
                   gflops_diff=_diff(row["gflops_paper"], paper.gflops))
        if paper.ratio_to:
            base = gflops_by_label.get(paper.ratio_to)
            if base is None:  # the base row is listed later or elsewhere: count it here
                base = audit(paper.ratio_to, device=device).gflops_paper
            row.update(ratio_to=paper.ratio_to, ratio_pct=100 * row["gflops_paper"] / base,
                       paper_ratio_pct=paper.ratio_pct)
        rows.append(row)
    return rows


def _fmt(value, spec=".1f"):
    return "" if value is None else format(value, spec)


def _signed(value):
    return "" if value is None else f"{value:+.2f}"


def format_table(rows: list) -> str:
    """Markdown table; sections as bold separator rows when the rows carry them."""
    header = ("| row | params (M) | paper | diff | GFLOPs paper conv. | paper | diff | GFLOPs exact | "
              "attention exact |")
    lines = [header, "|" + "---|" * 9]
    section = None
    for row in rows:
        if row.get("section") and row["section"] != section:
            section = row["section"]
            lines.append(f"| **{section}** |" + " |" * 8)
        label = row.get("label", row["name"])
        note = ""
        if row.get("ratio_to"):
            note = f" ({row['ratio_pct']:.1f}% of {row['ratio_to']}; paper {row['paper_ratio_pct']}%)"
        lines.append(
            f"| {label}{note} | {row['params_m']:.2f} | {_fmt(row.get('paper_params_m'))} | "
            f"{_signed(row.get('params_diff'))} | {row['gflops_paper']:.2f} | {_fmt(row.get('paper_gflops'))} | "
            f"{_signed(row.get('gflops_diff'))} | {row['gflops_exact']:.2f} | {row['attention_gflops_exact']:.2f} |")
    return "\n".join(lines)


LEGEND = ("GFLOPs = multiply-accumulates of one forward pass for one image, counted on the instantiated model "
          "with torch.utils.flop_counter.\n'paper conv.': attention charged 2*L^2*D per block with L the "
          "fine image-token count (the paper's rule); 'exact': attention at the real sequence lengths.\n"
          "The paper prints DiT-B/2's 130.5 M parameters as 130.0.")
