"""What the inference and training benchmarks share: the feature rate, the precisions,
the device's name, the arguments' checks, peak memory (GPU, or the process's resident
size on CPU) and the quartiles of timed runs."""
from __future__ import annotations

import platform
import re
import statistics

FEATURE_RATE_HZ = 100  # fbank frames per second
#: arithmetic of the training benchmarks: float32, or bfloat16 autocast
PRECISIONS = ("float32", "bf16")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return cpu_name()


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _maxrss_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux


class PeakMemory:
    """Peak memory of what runs after :meth:`start`: CUDA's allocator peak, or on
    CPU the process's peak RSS above the RSS at :meth:`start`."""

    def __init__(self, device: str):
        self.device = device

    def start(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
            return
        self.base_kb = _status_kb("VmRSS")
        self.reset = _reset_peak_rss() and self.base_kb is not None
        if not self.reset:
            self.base_kb = _maxrss_kb()

    def read(self, cuda_holds: str, span: str) -> tuple[float, str]:
        """(peak MB, how it was measured); ``cuda_holds``/``span`` describe what it covers."""
        if self.device == "cuda":
            import torch

            return (torch.cuda.max_memory_allocated() / 2**20,
                    f"torch.cuda.max_memory_allocated ({cuda_holds})")
        if self.reset:
            return ((_status_kb("VmHWM") - self.base_kb) / 1024,
                    f"peak RSS over {span} (VmHWM, reset after build) minus RSS after build")
        return (_maxrss_kb() - self.base_kb) / 1024, "ru_maxrss minus ru_maxrss after build"


def quartiles(times: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) of ``times``."""
    if not times:
        raise ValueError("no timed runs")
    if len(times) == 1:
        return times[0], times[0], times[0]
    q = statistics.quantiles(times, n=4, method="inclusive")
    return q[0], statistics.median(times), q[2]


def check_args(batch: int, duration_s: float, runs: int, warmup: int, device: str,
               threads: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if duration_s * FEATURE_RATE_HZ < 10:
        raise ValueError(f"duration must be at least 0.1 s, got {duration_s}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
