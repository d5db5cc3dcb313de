"""The bench's profile section (where a step's time goes) and its streamed rows, on the CPU."""
import gzip
import json
from types import SimpleNamespace

import pytest
from torch.autograd import DeviceType

from mpdit.bench.plan import BenchRequest, RunOptions
from mpdit.bench.profile import CATEGORIES, breakdown_of, classify
from mpdit.bench.runner import run


@pytest.mark.parametrize("name, category", [
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "gemm"),
    ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", "gemm"),
    ("triton_tem_fused_addmm_0", "gemm"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<96, 128>>", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_knob_7", "attention"),
    ("_adaln_bwd_kernel", "fused ops"),
    ("void adaln_forward_kernel<float, c10::BFloat16>", "fused ops"),
    ("triton_per_fused_native_layer_norm_mul_0", "other kernels"),
    ("triton_poi_fused__to_copy_residual_adaln_modulate_backward_view_32", "other kernels"),  # Inductor's cast
    ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>", "other kernels"),
    ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4, ADAM_MODE 1>>", "optimizer"),
    ("void at::native::multi_tensor_apply_kernel<LerpFunctor<float>>", "ema"),
])
def test_kernel_names_fall_in_their_category(name, category):
    assert classify(name) == category


def _kernel(name, start, end, annotation=False):
    return SimpleNamespace(name=name, device_type=DeviceType.CUDA, is_user_annotation=annotation,
                           time_range=SimpleNamespace(start=start, end=end))


def test_gpu_breakdown_splits_the_span_exactly():
    """Two steps of a made-up GPU timeline (microseconds): categories by name, the optimizer and
    EMA by their ranges, idle = the span no kernel covers (overlaps counted once)."""
    events = []
    for offset in (0, 1000):
        events += [_kernel("sm90_xmma_gemm", offset + 0, offset + 300),
                   _kernel("flash_fwd_kernel", offset + 300, offset + 400),
                   _kernel("_adaln_fwd_kernel", offset + 450, offset + 500),
                   _kernel("triton_poi_fused_add_0", offset + 480, offset + 520),  # overlaps the fused op
                   _kernel("mpdit.optimizer", offset + 600, offset + 800, annotation=True),
                   _kernel("multi_tensor_apply_kernel", offset + 600, offset + 750),
                   _kernel("mpdit.ema", offset + 800, offset + 900, annotation=True),
                   _kernel("multi_tensor_apply_kernel", offset + 800, offset + 880)]
    result = breakdown_of(events, "cuda", steps=2)
    assert set(CATEGORIES) <= set(result)
    expected = {"gemm": 0.3, "attention": 0.1, "fused ops": 0.05, "other kernels": 0.04, "optimizer": 0.15,
                "ema": 0.08}
    for category, ms in expected.items():
        assert result[category] == pytest.approx(ms), category
    assert result["step_ms"] == pytest.approx(1.88 / 2)  # first start 0 to last end 1880 us
    busy = 0.3 + 0.1 + 0.07 + 0.15 + 0.08  # the fused op and its overlap cover 450-520
    assert result["idle"] == pytest.approx(1.88 / 2 - busy)
    assert result["top"][0] == ("sm90_xmma_gemm", pytest.approx(0.3))


def test_profile_section_streams_rows_and_writes_a_trace(tmp_path):
    result = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                           sections=["profile"]).plan(),
                 RunOptions(progress=False, plots=False))
    rows = result["results"].rows
    profile = {row["metric"]: row["value"] for row in rows if row["mode"] == "profile"}
    assert set(CATEGORIES) | {"step_ms"} == set(profile)
    assert sum(profile[c] for c in CATEGORIES) == pytest.approx(profile["step_ms"], rel=0.02)
    assert profile["gemm"] > 0 and profile["optimizer"] > 0 and profile["ema"] > 0
    assert "Where a training step's time goes" in result["markdown"]
    streamed = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert streamed[0] == {"settings": {"preset": "tiny", "device": "cpu", "models": ["MPDiT-S/8px"],  # --resume: same
                                        "providers": ["torch"], "sections": ["profile"], "format": 3}}
    assert [row for line in streamed[1:] for row in line["rows"]] == rows  # every row reached the stream
    assert [line["done"] for line in streamed[1:]] == [["setup", "-", "-"], ["train", "MPDiT-S/8px", "torch"]]
    trace = json.loads(gzip.decompress((tmp_path / "trace_MPDiT-S-8px_torch.json.gz").read_bytes()))
    assert trace["traceEvents"]
    longest = next(line for line in result["markdown"].splitlines() if line.startswith("Longest kernels"))
    resumed = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["profile"]).plan(),
                  RunOptions(progress=False, plots=False, resume=True))  # nothing left to run
    assert longest in resumed["markdown"]  # the longest kernels are rows: a resumed or isolated run keeps them
