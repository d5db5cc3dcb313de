"""CMakeLists.txt builds csrc/ standalone against the installed torch and its C++ unit tests
(csrc/tests/test_ops.cpp) pass under ctest: the build of record's sources, a second way."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
@pytest.mark.skipif(os.environ.get("MPDIT_NATIVE_BUILD") == "0", reason="MPDIT_NATIVE_BUILD=0: no native build")
def test_cmake_build_and_ctest(tmp_path):
    configure = ["cmake", "-S", ROOT, "-B", str(tmp_path), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 f"-DPython3_EXECUTABLE={sys.executable}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for command in (configure, ["cmake", "--build", str(tmp_path), "-j", str(os.cpu_count() or 2)],
                    ["ctest", "--test-dir", str(tmp_path), "--output-on-failure"]):
        run = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{' '.join(command[:2])} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "100% tests passed" in run.stdout
