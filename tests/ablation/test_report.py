"""The ablation's table from results: mean and spread over seeds, the difference from the row each
row is compared with (a tie when within the spread), the paper's difference beside it."""
import pytest

from mpdit.ablation.report import format_table, summarize
from mpdit.ablation.rows import ablation_rows
from mpdit.ablation.runner import describe

DIGITS = {"in_channels": 1, "latent_size": 16, "num_classes": 10}


def result(row: dict, seed: int, fd: float) -> dict:
    final = {"step": 10, "images_seen": 80, "compute_gflop": row["gflops"] * 80, "fd_digits": fd, "precision": 0.5,
             "recall": 0.25, "fd_digits_floor": 1.0, "samples": 8}
    return {"network": row["network"], "seed": seed, "images_per_s": 10.0 + seed, "evaluations": [final],
            "final": final}


def test_the_table_gives_mean_spread_differences_and_ties():
    described = describe(ablation_rows("1", "S", ("dit", "shared-adaln", "class-tokens")), DIGITS)
    dit, shared, tokens = described
    fds = {dit["network"]: (30.0, 31.0, 32.0), shared["network"]: (30.5, 31.5, 32.5),  # +0.5: inside the spread
           tokens["network"]: (25.0, 25.2, 25.4)}  # -6.3: outside it
    results = [result(row, seed, fds[row["network"]][seed]) for row in described for seed in range(3)]
    summary = summarize(described, results, (0, 1, 2))
    assert summary[0]["fd_digits"] == pytest.approx({"mean": 31.0, "sd": 1.0, "min": 30.0, "max": 32.0, "n": 3})
    assert summary[0]["images_per_s"] == pytest.approx(11.0)
    lines = format_table(summary, results).splitlines()
    assert "FD (digits features) (mean ± sd, 3 seeds)" in lines[0]
    assert lines[3].startswith("| DiT-S/2 | 32.50 | 1.408 | 11.0 | 31.00 ± 1.00 |  | 0.500 ± 0.000 | 0.250 ± 0.000 |")
    assert "| 31.50 ± 1.00 | +0.50 (tie) |" in lines[4] and lines[4].endswith("| 35.31 | +0.47 |")
    assert "| 25.20 ± 0.20 | -6.30 |" in lines[5] and lines[5].endswith("| 28.56 | -6.75 |")
    assert "Real held-out digits score FD 1.00" in lines[-1]


def test_only_the_requested_seeds_count_and_a_missing_row_is_blank():
    described = describe(ablation_rows("4", "S", ("upgrades", "k4")), DIGITS)
    upgrades, k4 = described
    results = [result(upgrades, 0, 20.0), result(upgrades, 5, 99.0), result(k4, 0, 19.0)]
    summary = summarize(described, results, (0,))
    assert summary[0]["fd_digits"]["mean"] == 20.0 and summary[0]["seeds_done"] == [0]
    row = format_table(summary, results).splitlines()[4]
    assert row.startswith("| MPDiT-S k = 4 |") and "| 19.00 | -1.00 |" in row  # one seed: no spread, no tie
    assert "curve" not in summarize(described, results[1:2], (0,))[0]
