"""bench.md's headline and sampling table from hand-made rows: each figure is taken at its own
batch size and from the best provider; MPDiT against its baseline on the same provider."""
from dataclasses import replace

import pytest

from mpdit.bench.report import headline, markdown
from mpdit.bench.results import Results, Shape

B1, B16 = Shape(batch=1, dtype="bfloat16", guidance=1.5), Shape(batch=16, dtype="bfloat16", guidance=1.5)


def sampling_rows(results, label, provider, run_ms_b1, run_ms_b16, graph_scale=0.5, step_spread=(0.9, 1.1)):
    for x, run_ms in ((B1, run_ms_b1), (B16, run_ms_b16)):
        step = run_ms / 250
        for metric, value in (("median_ms", step), ("p20_ms", step * step_spread[0]), ("p80_ms", step * step_spread[1]),
                              ("graph_median_ms", step * graph_scale)):
            results.add(label, provider, "sample_step", metric, "ms", x, value)
        results.add(label, provider, "sample_run", "run_ms", "ms", replace(x, steps=50), run_ms / 5)
        results.add(label, provider, "sample_run", "run_ms", "ms", replace(x, steps=250), run_ms)
        results.add(label, provider, "sample_run", "graph_run_ms", "ms", replace(x, steps=250), run_ms * graph_scale)


def made_up_results():
    results = Results("cuda")
    # MPDiT: triton fastest at batch 1, torch fastest at batch 16; SiT: one provider
    sampling_rows(results, "MPDiT-XL", "torch", run_ms_b1=3000.0, run_ms_b16=8000.0)
    sampling_rows(results, "MPDiT-XL", "triton", run_ms_b1=2000.0, run_ms_b16=9000.0, step_spread=(0.5, 1.5))
    sampling_rows(results, "SiT-XL/2", "torch", run_ms_b1=4000.0, run_ms_b16=24000.0)
    for label, gflops in (("MPDiT-XL", 59.0), ("SiT-XL/2", 118.6)):
        results.add(label, "-", "audit", "gflops_paper", "GMAC", "per image", gflops)
    return results


def test_headline_quotes_each_sampling_batch_from_its_own_rows():
    lines = headline(made_up_results(), {"baselines": {"MPDiT-XL": "SiT-XL/2"}})
    table = "\n".join(lines)
    assert "250-step guided sampling s at B=1 | the same, CUDA graph | 250-step guided sampling s at B=16 |" in table
    mpdit = next(line for line in lines if line.startswith("| MPDiT-XL |"))
    # best provider per batch: triton 2.00 s at B=1 (graph 1.00), torch 8.00 s at B=16 (graph 4.00)
    assert "| 2.00 (triton) | 1.00 (triton) | 8.00 (torch) | 4.00 (torch) |" in mpdit
    ratios = next(line for line in lines if line.startswith("| MPDiT-XL vs SiT-XL/2 |"))
    assert "2.01x fewer" in ratios  # 118.6 / 59.0
    # SiT ran torch alone: MPDiT's torch against it (4.0 / 3.0 at B=1, 24.0 / 8.0 at B=16), not MPDiT's
    # best (triton's 2.0 s at B=1) against SiT's best on another provider
    assert ratios.endswith("| 1.33x (torch) | 3.00x (torch) |")


def test_sampling_table_has_a_row_per_batch_and_marks_noisy_steps():
    meta = {"environment": {"gpu": "test GPU", "torch": "-"}, "preset": "test", "dtype": "bfloat16", "notes": [],
            "baselines": {}}
    text = markdown(made_up_results(), meta, kernel_providers=())
    rows = [line for line in text.splitlines() if line.startswith("| MPDiT-XL | triton | B=")]
    assert [row.split(" | ")[2] for row in rows] == ["B=1", "B=16"]
    assert all("noisy: p20-p80 100% of the median" in row for row in rows)  # 0.5-1.5 of the median
    steady = [line for line in text.splitlines() if line.startswith("| MPDiT-XL | torch | B=")]
    assert len(steady) == 2 and not any("noisy" in row for row in steady)
    assert "| MPDiT-XL | torch | B=16 | 32.00 | 16.00 | 1.60 | - | 8.00 | 4.00 |" in text


META = {"environment": {"cpu": "test CPU", "threads": 2, "torch": "-"}, "preset": "test", "dtype": "float32",
        "notes": [], "baselines": {}}


def test_slow_rates_keep_three_significant_figures_and_failures_name_their_case():
    results = Results("cpu")
    results.add("device", "-", "ceiling", "matmul_peak", "TFLOP/s", "float32", 0.0412)
    for provider, rate in (("torch", 0.104), ("native", 0.0641)):
        results.add("MPDiT-B", provider, "train", "throughput", "images/s", Shape(1, dtype="float32"), rate)
        results.add("MPDiT-B", provider, "train", "median_ms", "ms", Shape(1, dtype="float32"), 1e3 / rate)
    results.errors.append({"case": ["sampling", "MPDiT-B", "torch"], "error": "timed out after 3 s"})
    text = markdown(results, META, kernel_providers=())
    assert "matmul 0.0412 TFLOP/s" in text
    assert "| MPDiT-B | torch | 9615.4 (---) | 0.104 |" in text
    assert "| MPDiT-B | native | 15600.6 (---) | 0.0641 |" in text
    assert "FAILED sampling MPDiT-B torch: timed out after 3 s" in text


def test_a_suspect_bandwidth_gets_no_ratio():
    from mpdit.bench.report import kernel_table

    results = Results("cpu")
    x = Shape(batch=32, width=768, dtype="float32")
    for provider, ms in (("torch", 2.0), ("native", 0.5)):
        results.add("adaln_modulate/fine", provider, "forward", "median_ms", "ms", x, ms)
    results.add("adaln_modulate/fine", "native", "forward", "bandwidth", "GB/s", x, 40.0)
    results.add("adaln_modulate/fine", "native", "forward", "copy_fraction", "%", x, 125.0)
    row = next(line for line in kernel_table(results, ("torch", "native")) if "adaln_modulate/fine" in line)
    assert row.endswith("| above the copy: timing suspect | - | - |")


def test_percentiles_of_few_runs_stay_within_them():
    from mpdit.bench.timing import _quantiles

    spread = _quantiles([500.0, 9600.0])  # two runs far apart, as on a busy machine
    assert 500.0 <= spread["p20_ms"] <= spread["median_ms"] <= spread["p80_ms"] <= 9600.0


def test_a_run_reads_back_from_its_stream_with_the_same_report(tmp_path):
    """bench.jsonl holds everything the report needs: a resumed run's Results (built from the
    stream) print the same tables as the Results that wrote it."""
    from mpdit.bench.results import start_stream

    stream = str(tmp_path / "bench.jsonl")
    start_stream(stream, {})
    written = made_up_results()
    written.stream = stream
    written.finish(("sampling", "-", "-"))
    meta = {"environment": {"gpu": "test GPU", "torch": "-"}, "preset": "test", "dtype": "bfloat16", "notes": [],
            "baselines": {"MPDiT-XL": "SiT-XL/2"}}
    read_back = Results.resumed("cuda", stream)
    assert read_back.finished == {'["sampling", "-", "-"]'}
    assert markdown(read_back, meta, ()) == markdown(written, meta, ())


def test_the_comparison_is_on_one_provider_and_says_when_a_side_has_no_figure():
    """A baseline case that failed (timed out, say) leaves its provider out of the comparison; a
    figure one side lacks on every provider is said as missing, not taken from another provider."""
    results = Results("cpu")
    for label, provider, rate in (("MPDiT-B", "torch", 4.0), ("MPDiT-B", "native", 6.0), ("SiT-B/2", "native", 2.0)):
        results.add(label, provider, "train", "throughput", "images/s", Shape(8, dtype="float32"), rate)
    results.add("MPDiT-B", "native", "inference", "throughput", "images/s", Shape(2, dtype="float32"), 9.0)
    lines = headline(results, {"baselines": {"MPDiT-B": "SiT-B/2"}})
    ratios = next(line for line in lines if line.startswith("| MPDiT-B vs SiT-B/2 |"))
    assert "| 3.00x (native) |" in ratios  # 6.0 / 2.0 on native, where SiT has its only figure
    assert "| - (SiT-B/2: no figure) |" in ratios  # inference: MPDiT's alone
    results.add("SiT-B/2", "compile", "inference", "throughput", "images/s", Shape(2, dtype="float32"), 3.0)
    ratios = next(line for line in headline(results, {"baselines": {"MPDiT-B": "SiT-B/2"}})
                  if line.startswith("| MPDiT-B vs SiT-B/2 |"))
    assert "| - (no provider ran both: native / compile) |" in ratios


def test_the_default_case_timeout_scales_with_the_measured_machine():
    from mpdit.bench.executor import REFERENCE_TFLOPS, TIMEOUT_S, default_case_timeout

    assert default_case_timeout("cpu", REFERENCE_TFLOPS["cpu"] * 2) == TIMEOUT_S  # faster: never shorter
    assert default_case_timeout("cpu", REFERENCE_TFLOPS["cpu"] / 3) == pytest.approx(3 * TIMEOUT_S)
    assert default_case_timeout("cuda", REFERENCE_TFLOPS["cuda"] / 2) == pytest.approx(2 * TIMEOUT_S)
    assert default_case_timeout("cpu", None) == TIMEOUT_S  # no ceiling measured (a resume without it)

