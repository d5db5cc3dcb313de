"""What a benchmark ran on: device (through nvidia-ml-py on NVIDIA GPUs), CPU, library versions."""
import importlib.metadata
import os
import platform

import torch


def _version(package: str):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_state() -> dict:
    """Name, driver, clocks, power limit and memory of GPU 0, read (never set) through NVML."""
    state = {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    try:
        import pynvml  # from nvidia-ml-py; optional

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        state.update(
            driver=pynvml.nvmlSystemGetDriverVersion(),
            sm_clock_mhz=pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            sm_clock_max_mhz=pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            memory_clock_mhz=pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            power_limit_w=pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000,
            memory_total_gib=pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2 ** 30,
        )
        pynvml.nvmlShutdown()
    except Exception as error:  # NVML absent or refused: the rest of the record still stands
        state["nvml_error"] = f"{type(error).__name__}: {error}"
    return state


def environment(device: str) -> dict:
    env = {"device": device, "cpu": cpu_model(), "threads": torch.get_num_threads(), "cores": os.cpu_count(),
           "python": platform.python_version(), "torch": torch.__version__,
           **{name: _version(name) for name in ("triton", "flash-attn", "xformers", "torchdiffeq")}}
    if device == "cuda":
        env.update(gpu_state())
    return env
