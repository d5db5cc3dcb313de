"""The FLOP audit against the paper's tables."""
import pytest

from helpers.models import tiny_model
from mpdit.audit.flops import audit, count_forward_macs, count_parameters, paper_attention_macs
from mpdit.audit.paper import PAPER_ROWS, ROUNDED_BY_THE_PAPER
from mpdit.audit.report import paper_report


@pytest.fixture(scope="module")
def report():
    return paper_report()


@pytest.mark.parametrize("index", range(len(PAPER_ROWS)), ids=[row.label for row in PAPER_ROWS])
def test_every_paper_row_is_reproduced_within_a_tenth(report, index):
    row, paper = report[index], PAPER_ROWS[index]
    assert row["label"] == paper.label
    if paper.params_m is not None:
        tolerance = 0.6 if (paper.label, "params_m") in ROUNDED_BY_THE_PAPER else 0.1
        assert abs(row["params_m"] - paper.params_m) <= tolerance
    assert abs(row["gflops_paper"] - paper.gflops) <= 0.1


def test_exact_counts_match_the_notes(report):
    by_label = {row["label"]: row for row in report}
    assert by_label["MPDiT-B k = 6"]["gflops_exact"] == pytest.approx(16.2, abs=0.05)
    mpdit_xl = by_label["MPDiT-XL (N 28, k 6, D 1152)"]
    assert mpdit_xl["gflops_exact"] == pytest.approx(56.4, abs=0.05)
    assert mpdit_xl["gflops_exact"] / by_label["DiT-XL/2"]["gflops_exact"] == pytest.approx(0.476, abs=0.001)


def _analytic_macs(model):
    """Hand count of every matrix product of one forward for one image (a check of the counter)."""
    cfg = model.config
    D, m, C = cfg.hidden_size, cfg.class_tokens, cfg.in_channels
    macs, attention = 0, 0
    stage_tokens = [(cfg.latent_size // p) ** 2 for p, _ in cfg.stages]
    for (_, depth), tokens in zip(cfg.stages, stage_tokens):
        L = tokens + m
        macs += depth * L * D * (3 * D + D + 2 * int(cfg.mlp_ratio * D))
        attention += depth * 2 * L * L * D
    macs += stage_tokens[0] * C * cfg.stages[0][0] ** 2 * D  # coarse patch embedding
    for (patch, _), tokens, prev in zip(cfg.stages[1:], stage_tokens[1:], stage_tokens):
        ratio = (tokens // prev)
        macs += prev * D * ratio * D + (tokens + m) * D * D  # expand + refine
        macs += tokens * C * patch * patch * D + tokens * D * D  # skip patch embedding + projection
    macs += 6 * D * D  # shared modulation
    macs += 32 * 32 * 32 * 3 + 32 * D  # FNO pointwise convs and projection (the 1-input lift is a broadcast)
    macs += stage_tokens[-1] * D * cfg.stages[-1][0] ** 2 * cfg.out_channels  # final layer
    return macs + attention, attention


def test_counter_sees_every_matrix_product():
    model = tiny_model("MPDiT-S", stages=[(8, 2), (4, 1), (2, 2)])
    counted = count_forward_macs(model)
    total, attention = _analytic_macs(model)
    assert counted.attention == attention
    # the FNO's spectral layers, in real arithmetic (mpdit_kernels.ops.fno): per layer the rfft and
    # irfft of 16 modes over a 32-point grid at width 32 (re and im each), and the complex mode mix
    # as four real products
    layers, modes, grid, width = 3, 16, 32, 32
    spectral = layers * (2 * 2 * modes * grid * width + 4 * width * width * modes)
    assert counted.total == total + spectral


def test_meta_counts_equal_a_real_forward_on_cpu():
    meta, cpu = audit("MPDiT-S", device="meta", latent_size=16), audit("MPDiT-S", device="cpu", latent_size=16)
    assert meta == cpu
    assert meta.attention_gflops_exact > 0  # the CPU flash-attention kernel is counted too


def test_paper_convention_charges_attention_at_the_fine_image_tokens():
    model = tiny_model("MPDiT-S")
    assert paper_attention_macs(model.config) == 12 * 2 * 256 ** 2 * 64
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
