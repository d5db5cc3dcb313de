"""The bench's attention table: a row per installed attention library beside SDPA's backends."""
import mpdit_kernels.attention as dispatch
from helpers.attention import blhd_attention, fake_xformers
from mpdit.bench.attention_cases import bench_attention
from mpdit.bench.plan import BenchRequest
from mpdit.bench.results import Results
from mpdit_kernels.attention import attention_paths


def test_bench_times_each_installed_library(monkeypatch, capsys):
    """The attention table has a row per installed library next to SDPA's; one that refuses is named."""
    plan = BenchRequest("tiny", device="cpu", out="-", models=["MPDiT-S/8px"]).plan()  # training batch 2
    fake_xformers(monkeypatch, blhd_attention)
    monkeypatch.setattr(dispatch, "_used", set())
    results = Results("cpu")
    bench_attention(plan, None, results)
    providers = {row["provider"] for row in results.rows}
    assert "xformers" in providers and any(p.startswith("sdpa default") for p in providers)
    assert "xformers" not in attention_paths()  # the report's "attention paths" are the models' calls

    def refuses(q, k, v):
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`\nmore")

    fake_xformers(monkeypatch, refuses)
    results = Results("cpu")
    bench_attention(plan, None, results)
    assert "xformers" not in {row["provider"] for row in results.rows} and results.rows
    assert "xformers skipped: No operator found for `memory_efficient_attention_forward`" in capsys.readouterr().err
