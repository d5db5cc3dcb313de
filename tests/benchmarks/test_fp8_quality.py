"""benchmarks/fp8_quality.py: the loss gate's arithmetic, and the script end to end on a CPU: fp32
against bf16 autocast, and bf16 against fp8 as on the GPU (fp8 through torch's CPU _scaled_mm)."""
import importlib.util
import json
import pathlib

import pytest

from mpdit.models import float8

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "fp8_quality.py"
spec = importlib.util.spec_from_file_location("fp8_quality", SCRIPT)
fp8_quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fp8_quality)


def test_gate_compares_the_mean_of_the_last_window_against_the_first_precision():
    bf16 = [9.0] * 10 + [1.00] * 5
    inside, outside = [9.0] * 10 + [1.019] * 5, [1.0] * 10 + [0.97] * 5  # early steps do not count
    result = fp8_quality.verdict({"bf16": bf16, "fp8": inside}, window=5, tolerance=0.02)
    assert result["passed"] and result["relative_gaps"]["fp8"] == pytest.approx(0.019)
    result = fp8_quality.verdict({"bf16": bf16, "fp8": outside}, window=5, tolerance=0.02)
    assert not result["passed"] and result["relative_gaps"]["fp8"] == pytest.approx(-0.03)


def test_script_streams_each_step_and_writes_the_verdict(tmp_path):
    code = fp8_quality.main(["--model", "MPDiT-S", "--image-size", "8", "--steps", "4", "--batch", "4",
                             "--window", "2", "--precisions", "fp32,bf16", "--device", "cpu", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "fp8_quality.json").read_text())
    assert code == (0 if result["passed"] else 1) and result["reference"] == "fp32"
    for precision in ("fp32", "bf16"):
        steps = [json.loads(line) for line in (tmp_path / f"{precision}.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps] == [1, 2, 3, 4]
        assert result["means"][precision] == pytest.approx((steps[2]["loss"] + steps[3]["loss"]) / 2)
    # the same seed and data: bf16 autocast follows fp32 closely, not exactly
    assert 0 < abs(result["relative_gaps"]["bf16"]) < 0.02
    assert (tmp_path / "fp8_quality.png").read_bytes()[:4] == b"\x89PNG"
    assert "gate (within 2%)" in (tmp_path / "fp8_quality.md").read_text()


@pytest.mark.slow
def test_the_gate_itself_runs_float8_on_a_cpu(tmp_path, monkeypatch):
    """bf16 against fp8 as on the GPU, fp8 through torch's CPU _scaled_mm (--float8-on-cpu), a loop
    on a CPU: two blocks (--stages), no class tokens and one image (fewer rows for the float8 loop), two
    steps (the first leaves the blocks out of the output: their gates start at zero), a learning rate
    that opens them at once."""
    pytest.importorskip("torchao.float8")
    monkeypatch.setattr(float8, "ALLOW_CPU", False)  # main() sets it; restored after the test
    code = fp8_quality.main(["--model", "MPDiT-S", "--stages", "4:1,2:1", "--class-tokens", "0", "--image-size", "8",
                             "--steps", "2", "--batch", "1", "--window", "1", "--lr", "1e-2",
                             "--kernel-backend", "torch", "--device", "cpu", "--float8-on-cpu", "--out", str(tmp_path)])
    assert code == 0 and float8.ALLOW_CPU
    assert "# Loss gate: MPDiT-S stages 4:1,2:1 class-tokens 0, digits 8px" in (tmp_path / "fp8_quality.md").read_text()
    norms = {precision: [json.loads(line)["grad_norm"] for line in (tmp_path / f"{precision}.jsonl").open()]
             for precision in ("bf16", "fp8")}
    # the same seed and data: fp8 follows bf16 closely, and differs from it (bf16 twice is bit-identical)
    assert norms["bf16"] != norms["fp8"] and norms["bf16"] == pytest.approx(norms["fp8"], rel=0.01)


def test_duplicate_precisions_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        fp8_quality.main(["--precisions", "bf16,bf16", "--out", str(tmp_path)])
    assert "--precisions=bf16,bf16: expected two or more different ones" in capsys.readouterr().err
