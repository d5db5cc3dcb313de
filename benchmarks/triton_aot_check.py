"""Compile every Triton kernel for a GPU target without a GPU, and report ptxas's resource use.

    TRITON_INTERPRET=0 python benchmarks/triton_aot_check.py            # sm_90 (H100 / H200)
    TRITON_INTERPRET=0 python benchmarks/triton_aot_check.py --arch 80

Catches what the interpreter cannot (code that does not lower to PTX) and shows registers,
spills and the width of every global load and store per kernel at MPDiT-XL's
specialisation, using the ptxas that ships inside the Triton wheel. The specialisation is
the one a launch gets: D = 1152, the fine shape's 272 tokens, bf16 branch inputs, an fp32
residual stream, and, as Triton's launcher does, every pointer (16-byte aligned, as torch
allocates) and every integer that is a multiple of 16 marked divisible by 16. Without those
marks ptxas sees scalar loads (ld.global.b16) where a launch gets 128-bit ones (v4.b32),
and other register counts.
"""
import argparse
import collections
import glob
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mpdit_kernels.triton import adaln, fno, upsample

BF16, FP32 = "*bf16", "*fp32"
UPSAMPLE = {"R": 2, "RR_BLOCK": 4, "BLOCK_D": 2048}  # ratio 2, D = 1152: 16 warps (the launcher's choice)


def pointer_types(fn, overrides=None, default=FP32):
    """Every *_ptr argument as `default` unless named in overrides; integers and floats as given."""
    types = {name: default for name in fn.arg_names if name.endswith("_ptr")}
    types.update(overrides or {})
    return types


# The integer arguments at MPDiT-XL's fine shape (B = 256, 16 class tokens + 256 patches,
# D = 1152; adaLN's backward has P = 17 partial rows of 16; the upsample reads an 8 x 8 grid).
L, D, M = 272, 1152, 16
INTS = {"L": L, "D": D, "M": M, "P": 17, "W": 8, "stride_xb": L * D, "stride_xl": D, "stride_yb": L * D,
        "stride_yl": D, "stride_gb": 6 * D, "stride_sb": 6 * D, "stride_cb": 6 * D}

# (label, kernel, argument types, constexpr values, warps) at MPDiT-XL shapes; warps None:
# an autotuned kernel, compiled once per config.
CASES = [
    ("residual_adaln fwd", adaln._adaln_fwd_kernel,
     pointer_types(adaln._adaln_fwd_kernel, {"y_ptr": BF16, "gate_ptr": BF16, "shift_ptr": BF16, "scale_ptr": BF16,
                                              "L": "i32", "D": "i32", "stride_xb": "i32", "stride_xl": "i32",
                                              "stride_yb": "i32", "stride_yl": "i32", "stride_gb": "i32",
                                              "stride_sb": "i32", "stride_cb": "i32", "eps": "fp32"}),
     {"HAS_RESIDUAL": True, "BLOCK_D": 2048}, None),
    ("residual_adaln bwd", adaln._adaln_bwd_kernel,
     pointer_types(adaln._adaln_bwd_kernel, {"y_ptr": BF16, "gate_ptr": BF16, "scale_ptr": BF16, "dh_ptr": BF16,
                                              "dy_ptr": BF16, "L": "i32", "D": "i32", "P": "i32", "stride_xb": "i32",
                                              "stride_xl": "i32", "stride_yb": "i32", "stride_yl": "i32",
                                              "stride_gb": "i32", "stride_cb": "i32"}),
     {"HAS_RESIDUAL": True, "BLOCK_D": 2048, "ROWS": adaln.BACKWARD_ROWS}, None),
    ("upsample fwd", upsample._upsample_fwd_kernel,
     pointer_types(upsample._upsample_fwd_kernel, {"wide_ptr": BF16, "L": "i32", "D": "i32", "M": "i32", "W": "i32",
                                                    "eps": "fp32"}), UPSAMPLE, 16),
    ("upsample bwd", upsample._upsample_bwd_kernel,
     pointer_types(upsample._upsample_bwd_kernel, {"wide_ptr": BF16, "dwide_ptr": BF16, "L": "i32", "D": "i32",
                                                    "M": "i32", "W": "i32"}), UPSAMPLE, 16),
    ("fine_entry fwd", upsample._fine_entry_kernel,
     pointer_types(upsample._fine_entry_kernel, {"refined_ptr": BF16, "skip_ptr": BF16, "L": "i32", "D": "i32",
                                                  "M": "i32"}), {"HAS_SKIP": True, "BLOCK_D": 2048, "ROWS": 16}, 8),
    ("fno fwd", fno._fno_fwd_kernel, pointer_types(fno._fno_fwd_kernel), {"N": 32, "C": 32, "M": 16, "LAYERS": 3}, 4),
    ("fno bwd", fno._fno_bwd_kernel, pointer_types(fno._fno_bwd_kernel), {"N": 32, "C": 32, "M": 16, "LAYERS": 3}, 4),
]


def variants(label, fn, constexprs, warps):
    """(label, jit function, constexprs, warps) for a plain kernel, or one per autotuner config."""
    if warps is not None:
        return [(label, fn, constexprs, warps)]
    return [(f"{label} {config.kwargs} warps={config.num_warps}", fn.fn, {**constexprs, **config.kwargs},
             config.num_warps) for config in fn.configs]


def launch_hints(names, signature) -> dict:
    """The divisibility marks Triton's launcher gives: aligned pointers, integers % 16 == 0."""
    hinted = [i for i, name in enumerate(names) if signature[name].startswith("*")
              or (signature[name] == "i32" and INTS.get(name, 1) % 16 == 0)]
    return {(i,): [["tt.divisibility", 16]] for i in hinted}


def compile_case(fn, types, constexprs, warps, target):
    names = fn.arg_names
    signature = {name: types.get(name, "constexpr") for name in names}
    constants = {(names.index(name),): value for name, value in constexprs.items()}
    source = ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=launch_hints(names, signature))
    return triton.compile(source, target=target, options={"num_warps": warps})


def memory_widths(ptx: str) -> str:
    """How many global loads and stores of each width the PTX has, e.g. 'ld v4.b32 x6'."""
    counts = collections.Counter(re.findall(r"\b(ld|st)\.global((?:\.[a-z0-9]+)*)", ptx))
    return ", ".join(f"{op}{kind.replace('.', ' ', 1)} x{n}" for (op, kind), n in sorted(counts.items()))


def ptxas_report(ptx: str, arch: int) -> str:
    found = glob.glob(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas*"))
    if not found:
        return "no ptxas in the Triton wheel"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    suffix = "a" if arch >= 90 else ""
    out = subprocess.run([found[0], "-v", "--gpu-name", f"sm_{arch}{suffix}", f.name, "-o", os.devnull],
                         capture_output=True, text=True)
    os.unlink(f.name)
    lines = [line.split("info    :")[-1].strip() for line in out.stderr.splitlines()
             if "registers" in line or "spill" in line]
    return "; ".join(lines) or out.stderr.strip()[-300:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90 = Hopper)")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("triton_aot_check: run with TRITON_INTERPRET=0 (the interpreter builds no GPU code)")
    target = GPUTarget("cuda", args.arch, 32)
    print(f"Triton {triton.__version__}, target sm_{args.arch}\n\n| kernel | result | global loads / stores |\n"
          "|---|---|---|")
    failed = 0
    cases = [(label, jit, types, values, w) for label, fn, types, constexprs, warps in CASES
             for label, jit, values, w in variants(label, fn, constexprs, warps)]
    for label, fn, types, constexprs, warps in cases:
        try:
            kernel = compile_case(fn, types, constexprs, warps, target)
            ptx = kernel.asm["ptx"]
            print(f"| {label} | compiled; {ptxas_report(ptx, args.arch)} | {memory_widths(ptx)} |")
        except Exception as error:  # report every kernel, then fail
            failed += 1
            print(f"| {label} | FAILED: {type(error).__name__}: {str(error)[:300]} |")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
