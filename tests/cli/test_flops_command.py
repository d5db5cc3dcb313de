"""`mpdit flops`: one model as JSON, an ablation row rebuilt from switches, the paper's table by
default, each mistake in one line."""
import json

import pytest

from helpers.cli import run_cli
from mpdit.audit.paper import PAPER_ROWS


def test_cli_one_model_as_json():
    (row,) = json.loads(run_cli("flops", "--model", "MPDiT-XL", "--fine-depth", "8", "--json").ok().out)
    assert {"name", "params_m", "gflops_paper", "gflops_exact"} <= set(row)
    assert row["name"] == "MPDiT-XL" and row["stages"] == [[4, 20], [2, 8]]
    assert row["gflops_paper"] == pytest.approx(65.4, abs=0.05)


def test_cli_overrides_rebuild_an_ablation_row():
    result = run_cli("flops", "--model", "DiT-B/2", "--shared-adaln", "--class-tokens", "16", "--time-embed", "fno",
                     "--json")
    (row,) = json.loads(result.ok().out)
    assert row["params_m"] == pytest.approx(101.2, abs=0.05)  # DiT's learned-sigma head kept
    assert row["gflops_paper"] == pytest.approx(24.3, abs=0.05)


@pytest.mark.slow
def test_cli_default_prints_the_paper_table():
    printed = run_cli("flops").ok().out
    for row in PAPER_ROWS:
        assert row.label in printed
    assert "+ MPDiT (k = 6) | 104.85 | 104.8 | +0.05 | 16.63 | 16.6 | +0.03 | 16.17 |" in printed


@pytest.mark.parametrize("args, message", [
    (["--model", "MPDiT-XXL"], "mpdit flops: error: model='MPDiT-XXL': unknown model; known models: DiT-S/2"),
    (["--model", "MPDiT-B", "--fine-depth", "0"], "mpdit flops: error: fine_depth=0"),
    (["--fine-depth", "4"], "mpdit flops: error: --fine-depth needs --model NAME"),
    (["--model", "MPDiT-B", "--time-embed", "rope"], "mpdit flops: error: argument --time-embed: invalid choice"),
    (["--model", "MPDiT-B", "--stages", "4-6"], "mpdit flops: error: argument --stages: '4-6'"),
    (["--bogus"], "mpdit: error: unrecognized arguments: --bogus"),
])
def test_cli_errors_are_one_line_without_traceback(args, message):
    assert run_cli("flops", *args).error.startswith(message)
