"""Every Triton kernel lowers to Hopper (sm_90) code at the specialisation a launch gets, with no
register spills and no 2-byte global accesses in the row kernels (a gather that reads every r-th
element shows up as ld.global.b16). Compiled ahead of time by benchmarks/triton_aot_check.py with
the ptxas inside the Triton wheel: no GPU needed."""
import glob
import os
import pathlib
import subprocess
import sys

import pytest
import triton

ROOT = pathlib.Path(__file__).resolve().parents[2]
PTXAS = glob.glob(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas*"))


@pytest.mark.slow
@pytest.mark.skipif(not PTXAS, reason="this Triton wheel ships no ptxas")
def test_kernels_lower_to_sm90_without_spills_or_narrow_row_accesses(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path)}  # the interpreter builds no PTX
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "triton_aot_check.py")], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and "compiled" in line]
    assert len(rows) == 17  # 6 + 6 adaLN configs, upsample forward and backward, fine_entry, FNO both ways
    for kernel, report, widths in rows:
        assert "0 bytes spill stores" in report, kernel
        if not kernel.startswith("| fno"):  # FNO reads its small weight tables element by element
            assert "b16" not in widths, f"{kernel}: {widths}"
