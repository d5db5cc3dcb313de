"""Build of record. Metadata lives in pyproject.toml; this adds the native extension (csrc/).

MPDIT_NATIVE_BUILD picks what is compiled into the native extension, mpdit_kernels._native:
  auto (default)  the C++ CPU ops, plus the CUDA kernels when torch is a CUDA build and a
                  CUDA toolkit (nvcc) is found
  cpu             the C++ CPU ops only
  cuda            both; fails if CUDA cannot be built
  0               nothing: the package is pure Python (kernel_backend="native" is unavailable)
torch must be importable while building, so install with `pip install --no-build-isolation`;
under pip's default build isolation torch is absent and the extension is skipped, loudly.
TORCH_CUDA_ARCH_LIST (e.g. "9.0") and MAX_JOBS are read by torch.utils.cpp_extension.
"""
import os
import shutil
import subprocess
import sys

from setuptools import setup

CPU_SOURCES = ["csrc/module.cpp", "csrc/schemas.cpp", "csrc/adaln.cpp", "csrc/upsample.cpp", "csrc/cpu_math.cpp"]
CUDA_SOURCES = ["csrc/adaln_cuda.cu", "csrc/upsample_cuda.cu"]
MODES = ("auto", "cpu", "cuda", "0")


def say(message):
    print(f"mpdit setup.py: {message}", file=sys.stderr)


def checked_build_ext(build_ext_class):
    """torch's build_ext, then a look at how the library links libstdc++: a second, static
    copy beside the one torch loads is unsupported, so such a build is reported."""
    class BuildExt(build_ext_class):
        def build_extensions(self):
            super().build_extensions()
            for extension in self.extensions:
                warn_if_static_libstdcxx(self.get_ext_fullpath(extension.name))

    return BuildExt


def warn_if_static_libstdcxx(library):
    ldd = shutil.which("ldd")
    if ldd is None or not os.path.exists(library):
        return
    needed = subprocess.run([ldd, library], capture_output=True, text=True).stdout
    if "libstdc++" not in needed:
        say(f"WARNING: {os.path.basename(library)} does not load the shared libstdc++ (compiler "
            f"{os.environ.get('CXX', 'c++')} links it statically): two libstdc++ copies in one process are "
            "unsupported. Rebuild with a compiler "
            "that links it dynamically, e.g. CC=gcc CXX=g++ from the system.")


def native_build():
    """(ext_modules, cmdclass) for setup(), or empty ones when the extension is skipped."""
    mode = os.environ.get("MPDIT_NATIVE_BUILD", "auto")
    if mode not in MODES:
        raise SystemExit(f"MPDIT_NATIVE_BUILD={mode!r}: expected one of {MODES}")
    if mode == "0":
        say("MPDIT_NATIVE_BUILD=0: skipping the native extension")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        if mode != "auto":
            raise SystemExit(f"MPDIT_NATIVE_BUILD={mode}: torch is not importable; install with --no-build-isolation")
        say("torch is not importable here (pip's build isolation?): building WITHOUT the native extension; "
            "`pip install --no-build-isolation -e .` builds it")
        return [], {}
    cuda_possible = torch.version.cuda is not None and CUDA_HOME is not None
    if mode == "cuda" and not cuda_possible:
        raise SystemExit(f"MPDIT_NATIVE_BUILD=cuda: needs a CUDA build of torch (have {torch.__version__}) and a "
                         f"CUDA toolkit (CUDA_HOME={CUDA_HOME})")
    with_cuda = cuda_possible and mode != "cpu"
    # at::parallel_for is OpenMP inside torch; its inline loop needs -fopenmp here too.
    # -fno-trapping-math lets GCC vectorise the clamped exp of the GELU (csrc/cpu_math.h); it
    # changes no result, only assumes floating-point exceptions are not trapped.
    args = {"cxx": ["-O3", "-fopenmp", "-fno-trapping-math"] + (["-DMPDIT_WITH_CUDA"] if with_cuda else []),
            "nvcc": ["-O3", "-DMPDIT_WITH_CUDA", "--expt-relaxed-constexpr"]}
    kind, sources = (CUDAExtension, CPU_SOURCES + CUDA_SOURCES) if with_cuda else (CppExtension, CPU_SOURCES)
    say(f"building mpdit_kernels._native with {'the CUDA kernels' if with_cuda else 'the C++ CPU ops only'}")
    extension = kind("mpdit_kernels._native", sources, extra_compile_args=args, extra_link_args=["-fopenmp"])
    return [extension], {"build_ext": checked_build_ext(BuildExtension)}


ext_modules, cmdclass = native_build()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
